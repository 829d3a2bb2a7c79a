/**
 * Canvas renderer for the board. Takes the canvas it draws on; touches no
 * global DOM, so importing it is safe anywhere.
 *
 * The backing store is sized in device pixels (devicePixelRatio) and a single
 * transform maps world units to them, so dots stay crisp on high-DPI screens
 * and the board can shrink to fit a phone without any other code knowing.
 * Drawing allocates nothing per player: hundreds of dots are a few hundred
 * arc() calls per frame.
 *
 * A world larger than the server's `view_size` is seen through a camera: a
 * view of min(world, view_size) px per axis that follows our dot and stops
 * at the world's edges (so no space outside the world is ever shown), with
 * a grid and a minimap that make the scrolling visible. In a world that
 * fits the view (the default 500 x 500) the camera is fixed at (0, 0) and
 * the board is drawn exactly as without one.
 */

const THEME = {
  board: '#101a2f',
  grid: 'rgba(148, 163, 184, 0.10)',
  gridMajor: 'rgba(148, 163, 184, 0.22)',
  mapBack: 'rgba(11, 17, 32, 0.72)',
  mapEdge: 'rgba(148, 163, 184, 0.45)',
  mapView: 'rgba(56, 189, 248, 0.9)',
  edge: 'rgba(148, 163, 184, 0.35)',
  outline: 'rgba(255, 255, 255, 0.75)',
  me: '#ffffff',
  meHalo: 'rgba(250, 204, 21, 0.95)',
  label: '#f8fafc',
  labelShadow: 'rgba(0, 0, 0, 0.8)',
};

/** Grid spacing, and the spacing of the brighter lines in large worlds (px). */
const GRID_PX = 50;
const MAJOR_PX = 500;
/** Minimap side in CSS px, and its margin from the board's corner. */
const MAP_CSS_PX = 72;
const MAP_MARGIN_CSS_PX = 8;

function clamp(v, lo, hi) {
  return v < lo ? lo : v > hi ? hi : v;
}

/**
 * What the board shows of the world: min(world, view) per axis.
 * @param {{width: number, height: number}} world
 * @param {number|null} viewSize  the server's `view_size`; null: the whole world
 */
export function viewOf(world, viewSize) {
  const v = viewSize > 0 ? viewSize : Infinity;
  return { width: Math.min(world.width, v), height: Math.min(world.height, v) };
}

/**
 * Top-left corner of the view, in world px: centred on `focus` (our dot),
 * clamped so the view stays inside the world. Without a focus, the world's
 * centre.
 * @param {{x: number, y: number}|null} focus
 */
export function cameraFor(focus, world, view) {
  const fx = focus ? focus.x : world.width / 2;
  const fy = focus ? focus.y : world.height / 2;
  return {
    x: clamp(fx - view.width / 2, 0, world.width - view.width),
    y: clamp(fy - view.height / 2, 0, world.height - view.height),
  };
}

export class Renderer {
  /** @param {HTMLCanvasElement} canvas */
  constructor(canvas) {
    this.canvas = canvas;
    this.ctx = canvas.getContext('2d', { alpha: false });
    this.world = { width: 500, height: 500, radius: 10 };
    this.view = { width: 500, height: 500 };
    /** Top-left of the view in world px, as of the last frame drawn. */
    this.camera = { x: 0, y: 0 };
    this.scale = 1; // device px per world unit
    this.dpr = 1;
  }

  /**
   * @param {{width: number, height: number, radius?: number, min?: number, max?: number}} world
   * @param {number|null} [viewSize]  `welcome.view_size`: the side of the square the server shows us
   */
  setWorld(world, viewSize = null) {
    this.world = world;
    this.view = viewOf(world, viewSize);
    this.camera = cameraFor(null, world, this.view);
  }

  /** Whether the camera moves: the world is larger than what is shown. */
  get scrolls() {
    return this.view.width < this.world.width || this.view.height < this.world.height;
  }

  /**
   * Match the backing store to the element's CSS size times the pixel ratio.
   * @param {number} cssWidth  the canvas' laid-out width in CSS px
   */
  resize(cssWidth, dpr) {
    const w = Math.max(1, Math.round(cssWidth * dpr));
    const h = Math.max(1, Math.round((cssWidth * this.view.height / this.view.width) * dpr));
    if (this.canvas.width !== w) this.canvas.width = w;
    if (this.canvas.height !== h) this.canvas.height = h;
    this.scale = w / this.view.width;
    this.dpr = dpr;
  }

  /**
   * @param {{x:number,y:number,color:string,id:any}[]} others  drawn first
   * @param {{x:number,y:number,color:string}|null} me  drawn on top, marked
   * @param {any} myId  skipped in `others` (we draw our predicted dot instead)
   */
  draw(others, me, myId = null) {
    const { ctx, world, view } = this;
    const r = world.radius ?? 10;
    // The camera follows what is drawn of our dot (predicted, gliding), so
    // it scrolls as smoothly as the dot moves; it holds still while we have none.
    if (me) this.camera = cameraFor(me, world, view);
    const cam = this.camera;
    ctx.setTransform(this.scale, 0, 0, this.scale, -cam.x * this.scale, -cam.y * this.scale);
    ctx.fillStyle = THEME.board;
    ctx.fillRect(cam.x, cam.y, view.width, view.height);
    this._grid();

    // Dots wholly outside the view are skipped: the server sends a margin
    // around it (whole cells), which need not cost any drawing.
    const x0 = cam.x - r - 4;
    const x1 = cam.x + view.width + r + 4;
    const y0 = cam.y - r - 4;
    const y1 = cam.y + view.height + r + 4;
    ctx.lineWidth = 1.5;
    ctx.strokeStyle = THEME.outline;
    for (let i = 0; i < others.length; i++) {
      const p = others[i];
      if (p.id === myId || p.x < x0 || p.x > x1 || p.y < y0 || p.y > y1) continue;
      ctx.beginPath();
      ctx.arc(p.x, p.y, r, 0, Math.PI * 2);
      ctx.fillStyle = p.color;
      ctx.fill();
      ctx.stroke();
    }

    if (me) {
      // Halo + white ring make "you" unmistakable whatever colour you got.
      ctx.beginPath();
      ctx.arc(me.x, me.y, r + 4, 0, Math.PI * 2);
      ctx.lineWidth = 3;
      ctx.strokeStyle = THEME.meHalo;
      ctx.stroke();
      ctx.beginPath();
      ctx.arc(me.x, me.y, r, 0, Math.PI * 2);
      ctx.fillStyle = me.color;
      ctx.fill();
      ctx.lineWidth = 2.5;
      ctx.strokeStyle = THEME.me;
      ctx.stroke();

      ctx.font = '600 12px system-ui, sans-serif';
      ctx.textAlign = 'center';
      // Label above the dot, or below it when hugging the top of the view.
      const above = me.y - cam.y - r - 8 > 12;
      ctx.textBaseline = above ? 'bottom' : 'top';
      const ly = above ? me.y - r - 7 : me.y + r + 7;
      ctx.fillStyle = THEME.labelShadow;
      ctx.fillText('you', me.x + 1, ly + 1);
      ctx.fillStyle = THEME.label;
      ctx.fillText('you', me.x, ly);
    }
    if (this.scrolls) this._minimap(me);
  }

  /**
   * Grid lines every 50 px over the part of the world in view (the whole
   * board in a small world: the same lines as ever), and in a scrolling
   * world brighter ones every 500 px, so movement of the camera shows even
   * where nobody else is.
   */
  _grid() {
    const { ctx, world, view, camera: cam } = this;
    // Lines strictly inside the world, within the view.
    const lines = (step, from, size, limit, draw) => {
      for (let v = Math.max(step, Math.ceil(from / step) * step); v < limit && v <= from + size; v += step) draw(v);
    };
    const vertical = (x) => { ctx.moveTo(x, cam.y); ctx.lineTo(x, cam.y + view.height); };
    const horizontal = (y) => { ctx.moveTo(cam.x, y); ctx.lineTo(cam.x + view.width, y); };
    ctx.lineWidth = 1 / this.scale; // hairline in device px
    ctx.strokeStyle = THEME.grid;
    ctx.beginPath();
    lines(GRID_PX, cam.x, view.width, world.width, vertical);
    lines(GRID_PX, cam.y, view.height, world.height, horizontal);
    ctx.stroke();
    if (this.scrolls) {
      ctx.lineWidth = 2 / this.scale;
      ctx.strokeStyle = THEME.gridMajor;
      ctx.beginPath();
      lines(MAJOR_PX, cam.x, view.width, world.width, vertical);
      lines(MAJOR_PX, cam.y, view.height, world.height, horizontal);
      ctx.stroke();
    }
    // The clamp bounds: where dot centres stop.
    if (world.min !== undefined && world.max !== undefined) {
      ctx.strokeStyle = THEME.edge;
      ctx.setLineDash([4 / this.scale * 2, 4 / this.scale * 2]);
      ctx.strokeRect(world.min, world.min, world.max - world.min, world.max - world.min);
      ctx.setLineDash([]);
    }
  }

  /**
   * Where we are in a large world: a small map in the bottom-left corner
   * with the world's outline, the part in view, and our dot.
   */
  _minimap(me) {
    const { ctx, world, view, camera: cam } = this;
    const side = MAP_CSS_PX * this.dpr;
    const margin = MAP_MARGIN_CSS_PX * this.dpr;
    const k = side / Math.max(world.width, world.height);
    const w = world.width * k;
    const h = world.height * k;
    const left = margin;
    const top = this.canvas.height - margin - h;
    ctx.setTransform(1, 0, 0, 1, 0, 0); // device px
    ctx.fillStyle = THEME.mapBack;
    ctx.fillRect(left, top, w, h);
    ctx.lineWidth = this.dpr;
    ctx.strokeStyle = THEME.mapEdge;
    ctx.strokeRect(left, top, w, h);
    ctx.strokeStyle = THEME.mapView;
    ctx.strokeRect(left + cam.x * k, top + cam.y * k, Math.max(2, view.width * k), Math.max(2, view.height * k));
    if (me) {
      ctx.fillStyle = THEME.meHalo;
      ctx.beginPath();
      ctx.arc(left + me.x * k, top + me.y * k, 2 * this.dpr, 0, Math.PI * 2);
      ctx.fill();
    }
  }
}
