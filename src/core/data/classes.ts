/** Class names of the built-in datasets, and the seed's Chinese names for Fashion-MNIST. */

export type Lang = 'en' | 'zh';

export const FASHION_MNIST_CLASSES = [
  'T-shirt/top',
  'Trouser',
  'Pullover',
  'Dress',
  'Coat',
  'Sandal',
  'Shirt',
  'Sneaker',
  'Bag',
  'Ankle boot',
];

/** MNIST digits, named as torchvision names them. */
export const MNIST_CLASSES = [
  '0 - zero',
  '1 - one',
  '2 - two',
  '3 - three',
  '4 - four',
  '5 - five',
  '6 - six',
  '7 - seven',
  '8 - eight',
  '9 - nine',
];

/** Kuzushiji-MNIST: the romanised hiragana of each class, as torchvision names them. */
export const KMNIST_CLASSES = ['o', 'ki', 'su', 'tsu', 'na', 'ha', 'ma', 'ya', 're', 'wo'];

/** The seed's own labels (d2l's get_fashion_mnist_labels, in Chinese). */
export const FASHION_MNIST_CLASSES_ZH = [
  'T恤',
  '裤子',
  '套衫',
  '连衣裙',
  '外套',
  '凉鞋',
  '衬衫',
  '运动鞋',
  '包',
  '短靴',
];

const TRANSLATIONS: Record<string, string> = Object.fromEntries(
  FASHION_MNIST_CLASSES.map((name, i) => [name, FASHION_MNIST_CLASSES_ZH[i]]),
);

/** Display name of a class in the chosen language; names without a translation stay as they are. */
export function displayName(name: string, lang: Lang): string {
  return lang === 'zh' ? (TRANSLATIONS[name] ?? name) : name;
}

/** The built-in IDX datasets `--dataset` accepts (their files are described in node/data/datasets.ts). */
export const IDX_DATASET_NAMES = ['fashion-mnist', 'mnist', 'kmnist'] as const;
