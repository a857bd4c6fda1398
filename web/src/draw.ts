/**
 * Freehand drawing on a canvas with the mouse, a pen or a finger: the strokes of both drawing
 * boxes in the page (the server model's and your own classes'). `onStroke` runs while a stroke
 * grows and `onEnd` when it ends, so a caller can classify as the drawing changes.
 */
export interface DrawingOptions {
  /** Stroke colour, read at every move (a colour picker may change it). */
  colour: () => string;
  width: number;
  onStroke: () => void;
  onEnd: () => void;
}

export function attachDrawing(canvas: HTMLCanvasElement, opts: DrawingOptions): void {
  const ctx = canvas.getContext('2d')!;
  let drawing = false;
  // Pointer position in canvas pixels (the canvas may be shown at another size).
  const point = (e: PointerEvent) => {
    const r = canvas.getBoundingClientRect();
    return [
      ((e.clientX - r.left) * canvas.width) / r.width,
      ((e.clientY - r.top) * canvas.height) / r.height,
    ];
  };
  canvas.addEventListener('pointerdown', (e) => {
    drawing = true;
    canvas.setPointerCapture(e.pointerId);
    const [x, y] = point(e);
    ctx.beginPath();
    ctx.moveTo(x, y);
  });
  canvas.addEventListener('pointermove', (e) => {
    if (!drawing) return;
    const [x, y] = point(e);
    ctx.strokeStyle = opts.colour();
    ctx.lineWidth = opts.width;
    ctx.lineCap = 'round';
    ctx.lineJoin = 'round';
    ctx.lineTo(x, y);
    ctx.stroke();
    opts.onStroke();
  });
  const end = () => {
    if (drawing) opts.onEnd();
    drawing = false;
  };
  canvas.addEventListener('pointerup', end);
  canvas.addEventListener('pointercancel', end);
}
