/**
 * Canvas renderer for the board. Takes the canvas it draws on; touches no
 * global DOM, so importing it is safe anywhere.
 *
 * The backing store is sized in device pixels (devicePixelRatio) and a single
 * transform maps world units to them, so dots stay crisp on high-DPI screens
 * and the board can shrink to fit a phone without any other code knowing.
 * Drawing allocates nothing per player: hundreds of dots are a few hundred
 * arc() calls per frame.
 */

const THEME = {
  board: '#101a2f',
  grid: 'rgba(148, 163, 184, 0.10)',
  edge: 'rgba(148, 163, 184, 0.35)',
  outline: 'rgba(255, 255, 255, 0.75)',
  me: '#ffffff',
  meHalo: 'rgba(250, 204, 21, 0.95)',
  label: '#f8fafc',
  labelShadow: 'rgba(0, 0, 0, 0.8)',
};

export class Renderer {
  /** @param {HTMLCanvasElement} canvas */
  constructor(canvas) {
    this.canvas = canvas;
    this.ctx = canvas.getContext('2d', { alpha: false });
    this.world = { width: 500, height: 500, radius: 10 };
    this.scale = 1; // device px per world unit
  }

  setWorld(world) {
    this.world = world;
  }

  /**
   * Match the backing store to the element's CSS size times the pixel ratio.
   * @param {number} cssWidth  the canvas' laid-out width in CSS px
   */
  resize(cssWidth, dpr) {
    const w = Math.max(1, Math.round(cssWidth * dpr));
    const h = Math.max(1, Math.round((cssWidth * this.world.height / this.world.width) * dpr));
    if (this.canvas.width !== w) this.canvas.width = w;
    if (this.canvas.height !== h) this.canvas.height = h;
    this.scale = w / this.world.width;
  }

  /**
   * @param {{x:number,y:number,color:string,id:any}[]} others  drawn first
   * @param {{x:number,y:number,color:string}|null} me  drawn on top, marked
   * @param {any} myId  skipped in `others` (we draw our predicted dot instead)
   */
  draw(others, me, myId = null) {
    const { ctx, world } = this;
    const r = world.radius ?? 10;
    ctx.setTransform(this.scale, 0, 0, this.scale, 0, 0);
    ctx.fillStyle = THEME.board;
    ctx.fillRect(0, 0, world.width, world.height);
    this._grid();

    ctx.lineWidth = 1.5;
    ctx.strokeStyle = THEME.outline;
    for (let i = 0; i < others.length; i++) {
      const p = others[i];
      if (p.id === myId) continue;
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
      // Label above the dot, or below it when hugging the top edge.
      const above = me.y - r - 8 > 12;
      ctx.textBaseline = above ? 'bottom' : 'top';
      const ly = above ? me.y - r - 7 : me.y + r + 7;
      ctx.fillStyle = THEME.labelShadow;
      ctx.fillText('you', me.x + 1, ly + 1);
      ctx.fillStyle = THEME.label;
      ctx.fillText('you', me.x, ly);
    }
  }

  _grid() {
    const { ctx, world } = this;
    const stepPx = 50;
    ctx.lineWidth = 1 / this.scale; // hairline in device px
    ctx.strokeStyle = THEME.grid;
    ctx.beginPath();
    for (let x = stepPx; x < world.width; x += stepPx) {
      ctx.moveTo(x, 0);
      ctx.lineTo(x, world.height);
    }
    for (let y = stepPx; y < world.height; y += stepPx) {
      ctx.moveTo(0, y);
      ctx.lineTo(world.width, y);
    }
    ctx.stroke();
    // The clamp bounds: where dot centres stop.
    if (world.min !== undefined && world.max !== undefined) {
      ctx.strokeStyle = THEME.edge;
      ctx.setLineDash([4 / this.scale * 2, 4 / this.scale * 2]);
      ctx.strokeRect(world.min, world.min, world.max - world.min, world.max - world.min);
      ctx.setLineDash([]);
    }
  }
}
