/**
 * The model of your own classes the page holds now (trained here, kept in this browser, or read
 * from a run directory): the sections that classify, save and download with it follow it here.
 */
import type { Net } from 'imgclf/core';
import type { PageBackbone } from './backbone.js';
import type { PageRunData } from './own-train.js';

export interface OwnModel extends PageRunData {
  /** The model; with a backbone, the head, which takes the backbone's features. */
  net: Net;
  /** Transfer learning: the backbone whose features `net` classifies (metadata.backbone). */
  backbone?: PageBackbone;
  /** A name to show: the one it was kept under, the file it came from, or the class names. */
  name: string;
  origin: 'trained' | 'kept' | 'uploaded';
}

type Listener = (model: OwnModel | undefined) => void;

let current: OwnModel | undefined;
const listeners: Listener[] = [];
/** The backbone chosen for training (own-classes.ts): a model replaced keeps it alive. */
let chosenBackbone_: PageBackbone | undefined;

/** Marks the backbone chosen for the next training, which `setOwnModel` must not release. */
export function setChosenBackbone(b: PageBackbone | undefined): void {
  chosenBackbone_ = b;
}

/** The backbone chosen for the next training, if one is loaded. */
export function chosenBackbone(): PageBackbone | undefined {
  return chosenBackbone_;
}

/** Whether `b` is in use: the chosen one, or the current model's. */
export function backboneInUse(b: PageBackbone): boolean {
  return b === chosenBackbone_ || b === current?.backbone;
}

export function ownModel(): OwnModel | undefined {
  return current;
}

/** Makes `model` the page's own model; the previous one is disposed. */
export function setOwnModel(model: OwnModel): void {
  if (current && current.net !== model.net) current.net.dispose();
  const old = current?.backbone;
  if (old && old !== model.backbone && old !== chosenBackbone_) old.dispose();
  current = model;
  document.body.dataset.ownModel = model.origin;
  for (const l of listeners) l(model);
}

export function onOwnModel(listener: Listener): void {
  listeners.push(listener);
}
