/**
 * The webcam: one stream for the whole page, shown in one <video>, used to capture training
 * frames and to classify live. `holdToRepeat` runs an action while a button is held down.
 */
import { $ } from './dom.js';
import { t } from './i18n.js';
import { onLangChange } from './lang.js';

type Listener = (on: boolean) => void;

export interface Camera {
  readonly video: HTMLVideoElement;
  /** Whether frames are coming. */
  readonly on: boolean;
  /** Starts the camera (asking for permission the first time); false when it cannot. */
  start(): Promise<boolean>;
  stop(): void;
  onChange(listener: Listener): void;
}

export function setUpCamera(): Camera {
  const video = $<HTMLVideoElement>('camera-video');
  const button = $<HTMLButtonElement>('camera-toggle');
  const status = $('camera-status');
  let stream: MediaStream | undefined;
  let problem = '';
  const listeners: Listener[] = [];

  const label = () => {
    button.textContent = stream ? t('cameraStop') : t('cameraStart');
    status.textContent = problem;
  };
  const changed = () => {
    label();
    document.body.dataset.camera = stream ? 'on' : 'off';
    for (const l of listeners) l(!!stream);
  };

  const camera: Camera = {
    video,
    get on() {
      return stream !== undefined && video.videoWidth > 0;
    },
    async start() {
      if (stream) return true;
      if (!navigator.mediaDevices?.getUserMedia) {
        problem = t('cameraUnavailable');
        changed();
        return false;
      }
      try {
        stream = await navigator.mediaDevices.getUserMedia({
          video: { width: { ideal: 640 }, height: { ideal: 480 } },
          audio: false,
        });
      } catch (err) {
        problem = t('cameraDenied', { message: (err as Error).message });
        changed();
        return false;
      }
      problem = '';
      video.srcObject = stream;
      video.hidden = false;
      await video.play().catch(() => undefined);
      // The first frame gives the size the captures need.
      if (!video.videoWidth)
        await new Promise<void>((resolve) =>
          video.addEventListener('loadeddata', () => resolve(), { once: true }),
        );
      changed();
      return true;
    },
    stop() {
      for (const track of stream?.getTracks() ?? []) track.stop();
      stream = undefined;
      video.srcObject = null;
      video.hidden = true;
      changed();
    },
    onChange(listener) {
      listeners.push(listener);
    },
  };

  button.addEventListener('click', () => {
    if (stream) camera.stop();
    else void camera.start();
  });
  onLangChange(label);
  label();
  return camera;
}

/**
 * Runs `action` at once and then every `everyMs` while `button` is held down (mouse, touch or
 * pen; Space or Enter on the keyboard); releasing it stops.
 */
export function holdToRepeat(button: HTMLElement, everyMs: number, action: () => void): void {
  let timer: ReturnType<typeof setInterval> | undefined;
  const begin = () => {
    if (timer !== undefined) return;
    button.classList.add('held');
    action();
    timer = setInterval(action, everyMs);
  };
  const end = () => {
    if (timer === undefined) return;
    clearInterval(timer);
    timer = undefined;
    button.classList.remove('held');
  };
  button.addEventListener('pointerdown', (e) => {
    if (e.button !== 0) return;
    button.setPointerCapture(e.pointerId);
    begin();
  });
  for (const type of ['pointerup', 'pointercancel', 'lostpointercapture', 'blur'] as const)
    button.addEventListener(type, end);
  button.addEventListener('keydown', (e) => {
    if ((e.key === ' ' || e.key === 'Enter') && !e.repeat) {
      e.preventDefault();
      begin();
    }
  });
  button.addEventListener('keyup', (e) => {
    if (e.key === ' ' || e.key === 'Enter') end();
  });
  // Touch: no context menu or text selection while holding.
  button.addEventListener('contextmenu', (e) => e.preventDefault());
}
