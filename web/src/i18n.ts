/** The page's two languages. Class names come from the server (/api/model), in both. */
export type Lang = 'en' | 'zh';

const en = {
  backend: 'TensorFlow.js backend',
  classifyTitle: 'Classify an image',
  dropHint: 'Drop an image here, or click to choose a file',
  drawHint: 'Or draw with the mouse: the prediction follows as you draw',
  clear: 'Clear',
  classifyWith: 'Classify with:',
  serverModel: 'server model',
  browserModel: 'model trained in this page',
  prediction: 'Prediction',
  galleryTitle: 'Test images and the server model’s predictions',
  gallerySummary: '{correct} of {n} shown are right (green); click one to inspect it',
  more: 'More',
  trainTitle: 'Train in the browser',
  model: 'Model',
  epochs: 'Epochs',
  lr: 'Learning rate',
  batchSize: 'Batch size',
  trainCount: 'Training images',
  start: 'Train',
  stop: 'Stop',
  testAccuracy: 'Test accuracy',
  notInBuild: 'not in this build',
  loadingData: 'Downloading {n} training and {t} test images…',
  training: 'Epoch {epoch}/{epochs}, batch {done}/{total}',
  finished: 'Done: {epochs} epoch(s) in {seconds} s on {backend}. The page now classifies with this model.',
  stopped: 'Stopped after {epochs} complete epoch(s).',
  failed: 'Training failed: {message}',
  loss: 'loss',
  accuracy: 'accuracy',
  probeLoss: 'training loss (probe)',
  probeAcc: 'training accuracy (probe)',
  testLoss: 'test loss',
  testAcc: 'test accuracy',
  epochAxis: 'epoch',
  chartNote:
    'Training curves are measured every few batches on a fixed probe of 1000 training images; test points after each epoch.',
  viaServer: '(server model)',
  viaBrowser: '(trained in this page)',
};

const zh: typeof en = {
  backend: 'TensorFlow.js 后端',
  classifyTitle: '图像分类',
  dropHint: '把图片拖到这里，或点击选择文件',
  drawHint: '也可以用鼠标画：边画边预测',
  clear: '清除',
  classifyWith: '使用模型：',
  serverModel: '服务器模型',
  browserModel: '本页训练的模型',
  prediction: '预测',
  galleryTitle: '测试图片与服务器模型的预测',
  gallerySummary: '显示的 {n} 张中有 {correct} 张正确（绿色）；点击查看',
  more: '更多',
  trainTitle: '在浏览器中训练',
  model: '模型',
  epochs: '迭代周期',
  lr: '学习率',
  batchSize: '批量大小',
  trainCount: '训练图片数',
  start: '训练',
  stop: '停止',
  testAccuracy: '测试准确度',
  notInBuild: '此版本未包含',
  loadingData: '正在下载 {n} 张训练图片和 {t} 张测试图片…',
  training: '第 {epoch}/{epochs} 个周期，批次 {done}/{total}',
  finished: '完成：{epochs} 个周期，用时 {seconds} 秒，后端 {backend}。现在用这个模型分类。',
  stopped: '已停止，完成了 {epochs} 个周期。',
  failed: '训练失败：{message}',
  loss: '损失',
  accuracy: '准确度',
  probeLoss: '训练损失（抽样）',
  probeAcc: '训练准确度（抽样）',
  testLoss: '测试损失',
  testAcc: '测试准确度',
  epochAxis: '周期',
  chartNote: '训练曲线每隔几个批次在固定的 1000 张训练图片上测量；每个周期结束后记录测试结果。',
  viaServer: '（服务器模型）',
  viaBrowser: '（本页训练）',
};

export type MessageKey = keyof typeof en;
const messages: Record<Lang, typeof en> = { en, zh };

let current: Lang = 'en';

export function getLang(): Lang {
  return current;
}

export function setLang(lang: Lang): void {
  current = lang;
  document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
  for (const el of document.querySelectorAll<HTMLElement>('[data-i18n]')) {
    el.textContent = t(el.dataset.i18n as MessageKey);
  }
}

/** A message in the current language, with {name} placeholders filled in. */
export function t(key: MessageKey, vars: Record<string, string | number> = {}): string {
  return messages[current][key].replace(/\{(\w+)\}/g, (_, k: string) => String(vars[k] ?? `{${k}}`));
}
