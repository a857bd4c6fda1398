/**
 * The model of your own classes the page holds now (trained here, kept in this browser, or read
 * from a run directory): the sections that classify, save and download with it follow it here.
 */
import type { Net } from 'imgclf/core';
import type { PageRunData } from './own-train.js';

export interface OwnModel extends PageRunData {
  net: Net;
  /** A name to show: the one it was kept under, the file it came from, or the class names. */
  name: string;
  origin: 'trained' | 'kept' | 'uploaded';
}

type Listener = (model: OwnModel | undefined) => void;

let current: OwnModel | undefined;
const listeners: Listener[] = [];

export function ownModel(): OwnModel | undefined {
  return current;
}

/** Makes `model` the page's own model; the previous one is disposed. */
export function setOwnModel(model: OwnModel): void {
  if (current && current.net !== model.net) current.net.dispose();
  current = model;
  document.body.dataset.ownModel = model.origin;
  for (const l of listeners) l(model);
}

export function onOwnModel(listener: Listener): void {
  listeners.push(listener);
}
