/**
 * Canvas sizing shared by the canvas renderers: crisp drawing at the device pixel ratio.
 */

/**
 * Size `canvas` to `width` x `height` CSS pixels at the device pixel ratio (its backing store
 * is reallocated only when that size changed) and return its 2D context, scaled so drawing
 * uses CSS pixels, and cleared.
 */
export function prepareCanvas(canvas, width, height, ctx = canvas.getContext("2d")) {
  const dpr = window.devicePixelRatio || 1;
  if (canvas.width !== Math.round(width * dpr) || canvas.height !== Math.round(height * dpr)) {
    canvas.width = Math.round(width * dpr);
    canvas.height = Math.round(height * dpr);
    canvas.style.width = `${width}px`;
    canvas.style.height = `${height}px`;
  }
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, width, height);
  return ctx;
}
