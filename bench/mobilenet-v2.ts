/**
 * MobileNetV2 as Keras builds it (keras.applications.MobileNetV2, alpha 1.0, 224 px), made with
 * tfjs-layers' functional API and random weights, saved as a tfjs layers model folder: the tfjs
 * form of the backbone the backbone section measures, so imgclf's tfjs path (and its conversion
 * to ONNX Runtime) run the same architecture as the PyTorch export, side by side.
 *
 * Layer for layer: a stride-2 3x3 stem of 32, then inverted residual blocks (expand 1x1,
 * depthwise 3x3 with Keras' ZeroPadding2D before a stride-2 one, project 1x1, an Add when the
 * shape is kept), a 1x1 of 1280, global average pooling, and a Dense(1000) top, whose input is
 * the feature layer imgclf cuts at by default. 3.5 M parameters, as Keras' has.
 */
// Building 3.5 M random weights needs a backend; the cpu one is enough and always there.
import '@tensorflow/tfjs-backend-cpu';
import * as tfl from '@tensorflow/tfjs-layers';

/** (expansion, output channels, repeats, first stride), MobileNetV2's table. */
const BLOCKS: [number, number, number, number][] = [
  [1, 16, 1, 1],
  [6, 24, 2, 2],
  [6, 32, 3, 2],
  [6, 64, 4, 2],
  [6, 96, 3, 1],
  [6, 160, 3, 2],
  [6, 320, 1, 1],
];

export function mobileNetV2(size = 224): tfl.LayersModel {
  const input = tfl.input({ shape: [size, size, 3], name: 'input_1' });
  const apply = (layer: tfl.layers.Layer, x: tfl.SymbolicTensor | tfl.SymbolicTensor[]) =>
    layer.apply(x) as tfl.SymbolicTensor;
  const bn = (x: tfl.SymbolicTensor) =>
    apply(tfl.layers.batchNormalization({ epsilon: 1e-3, momentum: 0.999 }), x);
  const relu6 = (x: tfl.SymbolicTensor) => apply(tfl.layers.reLU({ maxValue: 6 }), x);
  const conv1x1 = (x: tfl.SymbolicTensor, filters: number) =>
    apply(tfl.layers.conv2d({ filters, kernelSize: 1, padding: 'same', useBias: false }), x);

  let x = relu6(
    bn(
      apply(
        tfl.layers.conv2d({ filters: 32, kernelSize: 3, strides: 2, padding: 'same', useBias: false }),
        input,
      ),
    ),
  );
  let channels = 32;
  for (const [t, c, n, s] of BLOCKS) {
    for (let i = 0; i < n; i++) {
      const stride = i === 0 ? s : 1;
      const skip = x;
      let y = t === 1 ? x : relu6(bn(conv1x1(x, channels * t)));
      if (stride === 2) {
        // Keras' correct_pad for an even size: one row and column after.
        y = apply(
          tfl.layers.zeroPadding2d({
            padding: [
              [0, 1],
              [0, 1],
            ],
          }),
          y,
        );
      }
      y = relu6(
        bn(
          apply(
            tfl.layers.depthwiseConv2d({
              kernelSize: 3,
              strides: stride,
              padding: stride === 2 ? 'valid' : 'same',
              useBias: false,
            }),
            y,
          ),
        ),
      );
      y = bn(conv1x1(y, c));
      x = stride === 1 && channels === c ? apply(tfl.layers.add({}), [skip, y]) : y;
      channels = c;
    }
  }
  x = relu6(bn(conv1x1(x, 1280)));
  const pooled = apply(tfl.layers.globalAveragePooling2d({}), x);
  const top = apply(tfl.layers.dense({ units: 1000, activation: 'softmax', name: 'predictions' }), pooled);
  return tfl.model({ inputs: input, outputs: top, name: 'mobilenetv2_1.00_224' });
}
