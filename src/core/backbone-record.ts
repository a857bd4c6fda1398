/**
 * What a run records about the backbone its head runs on (metadata.json, field `backbone`): the
 * same record whether `imgclf train --backbone` (node/backbone/backbone.ts) or the page
 * (web/src/backbone.ts) trained the head, so either side loads the other's runs.
 */
import type { ImageShape } from './data/dataset.js';
import type { OnnxPreprocessing } from './onnx-rules.js';
import type { BackboneRange } from './plan.js';

export type BackboneFamily = 'imgclf-run' | 'teachable-machine' | 'layers' | 'graph' | 'huggingface' | 'onnx';

/** What a run records about its backbone (metadata.json, field `backbone`). */
export interface BackboneRecord {
  /** An absolute path (a model.json, an .onnx file or a folder holding one), a URL or hf:OWNER/NAME@REVISION. */
  source: string;
  format: 'layers-model' | 'graph-model' | 'onnx';
  family: BackboneFamily;
  /** SHA-256 of model.json's bytes and the weight files' bytes; of an ONNX graph, its file's bytes. */
  sha256: string;
  /** The images the backbone takes: the run's input shape. */
  inputShape: ImageShape;
  range: BackboneRange;
  /** The layer (layers models) or node (graph models) whose output is the features. */
  layer: string;
  /** Features per image. */
  features: number;
  /** ONNX: the folder URL the files were downloaded from (a hub repo at its revision). */
  url?: string;
  /** ONNX: the graph's input layout and name. */
  layout?: 'NCHW' | 'NHWC';
  input?: string;
  /** ONNX: how pixels become its input (`layer` is the output taken), applied the same everywhere. */
  preprocessing?: OnnxPreprocessing;
}
