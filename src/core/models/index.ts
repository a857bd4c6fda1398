/** Importing this module registers every built-in model. */
import './softmax.js';
import './softmax-scratch.js';
import './mlp.js';
import './lenet.js';
import './cnn.js';
import './knn.js';

export {
  checkOptions,
  create,
  describeOptions,
  optionDecl,
  optionHelp,
  optionValues,
  getEntry,
  list,
  loadNet,
  register,
  type ModelDefaults,
  type ModelEntry,
  type ModelSpec,
  type OptionDecl,
  type OptionDecls,
  type OptionValues,
} from './registry.js';
export { layersNet, type Net, type NetArtifacts } from './net.js';
