/**
 * The page's two languages. Class names come from the server (/api/model), in both; the
 * names of your own classes are shown as you typed them.
 */
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
  ownTitle: 'Your own classes',
  ownIntro:
    'Name two or more classes and give each some pictures: add or drop image files, or start the camera and hold a class’s capture button (a frame every 100 ms while held). Then train, try the model, and keep it.',
  cameraStart: 'Start camera',
  cameraStop: 'Stop camera',
  cameraUnavailable: 'No camera here: browsers offer it on https:// and http://localhost only.',
  cameraDenied: 'The camera cannot be used: {message}',
  captureFailed: 'Capture failed: {message}',
  addClass: 'Add a class',
  classNamePlaceholder: 'Name of class {i}',
  addImages: 'Add images',
  holdToCapture: 'Hold to capture',
  removeClass: 'Remove this class',
  removeImage: 'Remove this image',
  imageCount: '{n} image(s)',
  dropImages: 'or drop images on this card',
  notImages: 'Not images this browser can read, left out: {files}',
  imageSize: 'Image size',
  sizeOption: '{n} × {n} RGB',
  auto: 'auto',
  heldOutAccuracy: 'Held-out accuracy',
  classNeedsName: 'Class {i} needs a name.',
  classDuplicate: 'Two classes are named “{name}”.',
  classBadName:
    '“{name}” cannot name a class: it becomes a folder name, so no / \\ : * ? " < > | and no dot at either end.',
  classNeedsImages:
    'Class “{name}” needs at least {min} images (one to train on, one to test on); it has {n}.',
  preparing: 'Preparing images: {done}/{total}',
  ownPlan:
    '{train} images to train on, {test} held out (a stratified fifth). {model}, with its CLI recipe sized to the data: batch size {batch}, {epochs} epochs, {steps} steps.',
  ownFinished:
    'Done: {epochs} epoch(s) in {seconds} s on {backend}. Held-out accuracy {acc} on {n} images. Try it and keep it below.',
  ownStopped: 'Stopped after {epochs} complete epoch(s). Held-out accuracy {acc} on {n} images.',
  heldOutLoss: 'held-out loss',
  heldOutAcc: 'held-out accuracy',
  tryTitle: 'Try it',
  tryHint:
    'Add or drop a picture, draw one, or classify the camera live: the three likeliest classes appear.',
  tryNoModel: 'No model yet: train one above, load a saved one, or open a run directory below.',
  tryModel: 'Model: {name} ({model}, {shape}, {classes} classes; {origin})',
  tryFailed: 'Cannot classify: {message}',
  originTrained: 'trained in this page',
  originKept: 'saved in this browser',
  originUploaded: 'opened from files',
  drawOwnHint: 'Draw with the mouse; the prediction follows.',
  modelSees: 'what the model sees',
  liveStart: 'Classify the camera live',
  liveStop: 'Stop live classification',
  keepTitle: 'Keep it',
  saveName: 'Name',
  saveInBrowser: 'Save in this browser',
  downloadRun: 'Download run directory (zip)',
  uploadRun:
    'Open a run directory: pick its files (model.json, weights.bin, metadata.json, manifest.json) or its zip, or drop them here',
  savedModels: 'Saved in this browser:',
  savedNone: 'No model saved in this browser yet.',
  savedItem: '{name}: {classes} · {model} {shape} · held-out accuracy {acc} · {date}',
  loadSaved: 'Load',
  deleteSaved: 'Delete',
  savedAs: 'Saved in this browser as “{name}”; it is offered here after a reload.',
  loadedKept: 'Loaded “{name}” ({classes}).',
  downloaded:
    'Downloaded {file} ({kb} KB, {n} files with manifest.json). Unzip it and run: imgclf predict --run DIR picture.png',
  downloadedNoManifest:
    'Downloaded {file} ({kb} KB, {n} files) without manifest.json: SHA-256 needs https:// or localhost. It loads all the same.',
  opened: 'Opened “{name}” ({classes}).',
  openedChecked: 'Opened “{name}” ({classes}); every file matches manifest.json.',
  backbone: 'Backbone',
  backboneNone: 'none: train from scratch',
  backboneUrl: 'by URL',
  backboneFiles: 'open files',
  backboneLoad: 'Load',
  backbonePick: 'Open backbone files',
  backboneUrlPlaceholder: 'https://…/model.onnx, a folder URL, model.json, or hf:OWNER/NAME',
  backboneLoading: 'Loading the backbone {source}…',
  backboneReady:
    'Backbone {source}: {format} ({family}), input {shape}, {features} features, on {engine}. A head trains on its features.',
  backboneFailed: 'Backbone not loaded: {message}',
  backboneNeeded: 'Load a backbone first, or choose none.',
  featuring: 'Computing backbone features: {done}/{total}',
  ownPlanHead:
    '{train} images to train on, {test} held out (a stratified fifth). A {model} head on {features} backbone features, with the CLI recipe sized to the data: batch size {batch}, {epochs} epochs, {steps} steps.',
  loadingBackbone: 'Loading the run’s backbone {source}…',
  keepFailed: 'Failed: {message}',
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
  ownTitle: '你自己的类别',
  ownIntro:
    '给两个或更多类别命名，并为每个类别添加图片：添加或拖入图片文件，或打开摄像头后按住某个类别的拍摄按钮（按住时每 100 毫秒拍一帧）。然后训练、试用并保存模型。',
  cameraStart: '打开摄像头',
  cameraStop: '关闭摄像头',
  cameraUnavailable: '此处无法使用摄像头：浏览器只在 https:// 和 http://localhost 上提供。',
  cameraDenied: '无法使用摄像头：{message}',
  captureFailed: '拍摄失败：{message}',
  addClass: '添加类别',
  classNamePlaceholder: '类别 {i} 的名称',
  addImages: '添加图片',
  holdToCapture: '按住拍摄',
  removeClass: '删除此类别',
  removeImage: '删除此图片',
  imageCount: '{n} 张图片',
  dropImages: '也可以把图片拖到这张卡片上',
  notImages: '以下文件不是浏览器能读取的图片，已跳过：{files}',
  imageSize: '图像尺寸',
  sizeOption: '{n} × {n} 彩色',
  auto: '自动',
  heldOutAccuracy: '留出集准确度',
  classNeedsName: '类别 {i} 需要一个名称。',
  classDuplicate: '有两个类别都叫“{name}”。',
  classBadName: '“{name}”不能作为类别名称：它会成为文件夹名，不能包含 / \\ : * ? " < > |，首尾也不能是点。',
  classNeedsImages: '类别“{name}”至少需要 {min} 张图片（一张训练、一张测试）；现在有 {n} 张。',
  preparing: '正在准备图片：{done}/{total}',
  ownPlan:
    '{train} 张图片用于训练，{test} 张留出（按类别分层抽取五分之一）。{model}，使用命令行的训练方案并按数据量调整：批量大小 {batch}，{epochs} 个周期，共 {steps} 步。',
  ownFinished:
    '完成：{epochs} 个周期，用时 {seconds} 秒，后端 {backend}。留出集准确度 {acc}（{n} 张图片）。可以在下面试用和保存。',
  ownStopped: '已停止，完成了 {epochs} 个周期。留出集准确度 {acc}（{n} 张图片）。',
  heldOutLoss: '留出集损失',
  heldOutAcc: '留出集准确度',
  tryTitle: '试一试',
  tryHint: '添加或拖入一张图片、画一张，或实时识别摄像头画面：显示可能性最大的三个类别。',
  tryNoModel: '还没有模型：先在上面训练一个，载入已保存的模型，或在下面打开一个运行目录。',
  tryModel: '模型：{name}（{model}，{shape}，{classes} 个类别；{origin}）',
  tryFailed: '无法分类：{message}',
  originTrained: '在本页训练',
  originKept: '保存在本浏览器中',
  originUploaded: '从文件打开',
  drawOwnHint: '用鼠标画：边画边预测。',
  modelSees: '模型看到的图像',
  liveStart: '实时识别摄像头画面',
  liveStop: '停止实时识别',
  keepTitle: '保存模型',
  saveName: '名称',
  saveInBrowser: '保存到本浏览器',
  downloadRun: '下载运行目录（zip）',
  uploadRun:
    '打开运行目录：选择其中的文件（model.json、weights.bin、metadata.json、manifest.json）或它的 zip，也可以拖到这里',
  savedModels: '已保存在本浏览器中：',
  savedNone: '本浏览器中还没有保存的模型。',
  savedItem: '{name}：{classes} · {model} {shape} · 留出集准确度 {acc} · {date}',
  loadSaved: '载入',
  deleteSaved: '删除',
  savedAs: '已保存到本浏览器，名称为“{name}”；重新加载页面后会在这里列出。',
  loadedKept: '已载入“{name}”（{classes}）。',
  downloaded:
    '已下载 {file}（{kb} KB，{n} 个文件，含 manifest.json）。解压后运行：imgclf predict --run 目录 图片.png',
  downloadedNoManifest:
    '已下载 {file}（{kb} KB，{n} 个文件），没有 manifest.json：计算 SHA-256 需要 https:// 或 localhost。照样可以载入。',
  opened: '已打开“{name}”（{classes}）。',
  openedChecked: '已打开“{name}”（{classes}）；所有文件都与 manifest.json 一致。',
  backbone: '骨干网络',
  backboneNone: '无：从头训练',
  backboneUrl: '通过网址',
  backboneFiles: '打开文件',
  backboneLoad: '载入',
  backbonePick: '打开骨干网络文件',
  backboneUrlPlaceholder: 'https://…/model.onnx、文件夹网址、model.json 或 hf:OWNER/NAME',
  backboneLoading: '正在载入骨干网络 {source}…',
  backboneReady:
    '骨干网络 {source}：{format}（{family}），输入 {shape}，{features} 个特征，运行于 {engine}。分类头在它的特征上训练。',
  backboneFailed: '骨干网络未载入：{message}',
  backboneNeeded: '请先载入骨干网络，或选择“无”。',
  featuring: '正在计算骨干网络特征：{done}/{total}',
  ownPlanHead:
    '{train} 张图片用于训练，{test} 张留出（按类别分层抽取五分之一）。在 {features} 个骨干网络特征上训练 {model} 分类头，使用命令行的训练方案并按数据量调整：批量大小 {batch}，{epochs} 个周期，共 {steps} 步。',
  loadingBackbone: '正在载入该运行的骨干网络 {source}…',
  keepFailed: '失败：{message}',
};

export type MessageKey = keyof typeof en;
const messages: Record<Lang, typeof en> = { en, zh };

let current: Lang = 'en';

export function getLang(): Lang {
  return current;
}

/** Elements showing a message with values (`show`): shown again in the new language. */
const shown = new Map<HTMLElement, [MessageKey, Record<string, string | number>]>();

export function setLang(lang: Lang): void {
  current = lang;
  document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
  for (const el of document.querySelectorAll<HTMLElement>('[data-i18n]')) {
    el.textContent = t(el.dataset.i18n as MessageKey);
  }
  for (const [el, [key, vars]] of shown) {
    if (el.isConnected) el.textContent = t(key, vars);
    else shown.delete(el);
  }
}

/** Empties `el`, which showed a message. */
export function clearShown(el: Element): void {
  shown.delete(el as HTMLElement);
  el.textContent = '';
}

/** Shows message `key` in `el`, and again in the other language after a switch. */
export function show(el: Element, key: MessageKey, vars: Record<string, string | number> = {}): void {
  shown.set(el as HTMLElement, [key, vars]);
  el.textContent = t(key, vars);
}

/** A message in the current language, with {name} placeholders filled in. */
export function t(key: MessageKey, vars: Record<string, string | number> = {}): string {
  return messages[current][key].replace(/\{(\w+)\}/g, (_, k: string) => String(vars[k] ?? `{${k}}`));
}
