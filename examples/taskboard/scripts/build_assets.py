"""Regenerate static/img/logo.png and static/css/bundle.css deterministically (stdlib only)."""

from __future__ import annotations

import struct
import sys
import zlib
from itertools import pairwise
from pathlib import Path

STATIC = Path(__file__).resolve().parent.parent / "taskboard" / "static"

LOGO_SIZE = 64
BLUE = (37, 99, 235, 255)
WHITE = (255, 255, 255, 255)
CLEAR = (0, 0, 0, 0)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width: int, height: int, rows: list[list[tuple[int, int, int, int]]]) -> bytes:
    """An 8-bit RGBA PNG: signature, IHDR, one zlib IDAT (filter 0 per row), IEND."""
    raw = b"".join(b"\x00" + b"".join(bytes(px) for px in row) for row in rows)
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    chunks = _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, 9)) + _chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def _on_segment(x: float, y: float, a: tuple[float, float], b: tuple[float, float], width: float) -> bool:
    (ax, ay), (bx, by) = a, b
    dx, dy = bx - ax, by - ay
    t = max(0.0, min(1.0, ((x - ax) * dx + (y - ay) * dy) / (dx * dx + dy * dy)))
    px, py = ax + t * dx, ay + t * dy
    return (x - px) ** 2 + (y - py) ** 2 <= (width / 2) ** 2


def logo_rows(size: int = LOGO_SIZE) -> list[list[tuple[int, int, int, int]]]:
    """A blue rounded square with a white check mark."""
    radius = size * 0.2
    check = [(size * 0.27, size * 0.52), (size * 0.44, size * 0.69), (size * 0.74, size * 0.33)]
    stroke = size * 0.11
    rows = []
    for j in range(size):
        row = []
        for i in range(size):
            x, y = i + 0.5, j + 0.5
            # Distance outside the inner rectangle decides the rounded corners.
            cx = min(max(x, radius), size - radius)
            cy = min(max(y, radius), size - radius)
            if (x - cx) ** 2 + (y - cy) ** 2 > radius**2:
                row.append(CLEAR)
            elif any(_on_segment(x, y, a, b, stroke) for a, b in pairwise(check)):
                row.append(WHITE)
            else:
                row.append(BLUE)
        rows.append(row)
    return rows


SPACING = {
    "0": "0",
    "1": "0.25rem",
    "2": "0.5rem",
    "3": "0.75rem",
    "4": "1rem",
    "5": "1.25rem",
    "6": "1.5rem",
    "8": "2rem",
    "10": "2.5rem",
    "12": "3rem",
}
SIDES = {
    "": ("",),
    "x": ("-left", "-right"),
    "y": ("-top", "-bottom"),
    "t": ("-top",),
    "r": ("-right",),
    "b": ("-bottom",),
    "l": ("-left",),
}
PALETTE = {
    "slate": {
        "50": "#f8fafc",
        "100": "#f1f5f9",
        "300": "#cbd5e1",
        "500": "#64748b",
        "700": "#334155",
        "900": "#0f172a",
    },
    "blue": {"50": "#eff6ff", "100": "#dbeafe", "300": "#93c5fd", "500": "#3b82f6", "700": "#1d4ed8", "900": "#1e3a8a"},
    "green": {
        "50": "#f0fdf4",
        "100": "#dcfce7",
        "300": "#86efac",
        "500": "#22c55e",
        "700": "#15803d",
        "900": "#14532d",
    },
    "red": {"50": "#fef2f2", "100": "#fee2e2", "300": "#fca5a5", "500": "#ef4444", "700": "#b91c1c", "900": "#7f1d1d"},
    "amber": {
        "50": "#fffbeb",
        "100": "#fef3c7",
        "300": "#fcd34d",
        "500": "#f59e0b",
        "700": "#b45309",
        "900": "#78350f",
    },
}
TYPE_SCALE = {
    "xs": ("0.75rem", "1rem"),
    "sm": ("0.875rem", "1.25rem"),
    "base": ("1rem", "1.5rem"),
    "lg": ("1.125rem", "1.75rem"),
    "xl": ("1.25rem", "1.75rem"),
    "2xl": ("1.5rem", "2rem"),
    "3xl": ("1.875rem", "2.25rem"),
}
RADII = {
    "none": "0",
    "sm": "0.125rem",
    "": "0.25rem",
    "md": "0.375rem",
    "lg": "0.5rem",
    "xl": "0.75rem",
    "full": "9999px",
}
SHADOWS = {
    "sm": "0 1px 2px 0 rgb(0 0 0 / 0.05)",
    "": "0 1px 3px 0 rgb(0 0 0 / 0.1), 0 1px 2px -1px rgb(0 0 0 / 0.1)",
    "md": "0 4px 6px -1px rgb(0 0 0 / 0.1), 0 2px 4px -2px rgb(0 0 0 / 0.1)",
    "lg": "0 10px 15px -3px rgb(0 0 0 / 0.1), 0 4px 6px -4px rgb(0 0 0 / 0.1)",
}
COMPONENTS = """
.btn {
  display: inline-flex;
  align-items: center;
  gap: 0.375rem;
  padding: 0.45rem 0.9rem;
  border: 1px solid transparent;
  border-radius: 0.375rem;
  font-weight: 500;
  line-height: 1.25;
  cursor: pointer;
  transition: background-color 120ms ease, border-color 120ms ease;
}
.btn:focus-visible { outline: 2px solid #3b82f6; outline-offset: 2px; }
.btn:disabled, .btn[aria-disabled="true"] { opacity: 0.55; cursor: not-allowed; }
.btn-primary { background-color: #2563eb; color: #ffffff; }
.btn-primary:hover { background-color: #1d4ed8; }
.btn-secondary { background-color: #ffffff; border-color: #cbd5e1; color: #334155; }
.btn-secondary:hover { background-color: #f1f5f9; }
.btn-danger { background-color: #dc2626; color: #ffffff; }
.btn-danger:hover { background-color: #b91c1c; }
.card {
  background: #ffffff;
  border: 1px solid #e2e8f0;
  border-radius: 0.5rem;
  box-shadow: 0 1px 2px 0 rgb(0 0 0 / 0.05);
}
.card-header { padding: 0.75rem 1rem; border-bottom: 1px solid #e2e8f0; font-weight: 600; }
.card-body { padding: 1rem; }
.card-footer {
  padding: 0.75rem 1rem;
  border-top: 1px solid #e2e8f0;
  background: #f8fafc;
  border-radius: 0 0 0.5rem 0.5rem;
}
.table { width: 100%; border-collapse: collapse; font-size: 0.875rem; }
.table th {
  text-align: left;
  font-weight: 600;
  color: #475569;
  border-bottom: 2px solid #e2e8f0;
  padding: 0.5rem 0.75rem;
}
.table td { border-bottom: 1px solid #e2e8f0; padding: 0.5rem 0.75rem; vertical-align: top; }
.table tbody tr:hover { background-color: #f8fafc; }
.input {
  display: block;
  width: 100%;
  padding: 0.45rem 0.6rem;
  border: 1px solid #cbd5e1;
  border-radius: 0.375rem;
  background: #ffffff;
}
.input:focus {
  border-color: #3b82f6;
  outline: 2px solid rgb(59 130 246 / 0.35);
  outline-offset: 0;
}
.input[aria-invalid="true"] { border-color: #ef4444; }
.badge {
  display: inline-block;
  padding: 0.125rem 0.5rem;
  border-radius: 9999px;
  font-size: 0.75rem;
  font-weight: 600;
}
.badge-done { background: #dcfce7; color: #15803d; }
.badge-open { background: #dbeafe; color: #1d4ed8; }
.sr-only {
  position: absolute;
  width: 1px;
  height: 1px;
  padding: 0;
  margin: -1px;
  overflow: hidden;
  clip: rect(0, 0, 0, 0);
  white-space: nowrap;
  border: 0;
}
.truncate { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
@media (prefers-reduced-motion: reduce) {
  *, *::before, *::after {
    transition-duration: 0.01ms !important;
    animation-duration: 0.01ms !important;
  }
}
@media print { .site-header, .site-footer, .toggle, .add-task { display: none !important; } }
"""
BREAKPOINTS = {"sm": "40rem", "md": "48rem", "lg": "64rem"}
LAYOUT = {
    "block": "display: block;",
    "inline-block": "display: inline-block;",
    "flex": "display: flex;",
    "inline-flex": "display: inline-flex;",
    "grid": "display: grid;",
    "hidden": "display: none;",
    "flex-col": "flex-direction: column;",
    "flex-wrap": "flex-wrap: wrap;",
    "items-center": "align-items: center;",
    "justify-between": "justify-content: space-between;",
    "w-full": "width: 100%;",
}


def bundle_css() -> str:
    """A utility-class stylesheet of about 20 KB: reset, spacing, colours, layout, responsive variants."""
    out = [
        "/* bundle.css: shared utility layer (generated by scripts/build_assets.py; do not edit). */",
        "*, *::before, *::after { box-sizing: border-box; }",
        "html { -webkit-text-size-adjust: 100%; tab-size: 4; }",
        "img, svg { display: block; max-width: 100%; height: auto; }",
        "button, input, select, textarea { font: inherit; color: inherit; }",
        "",
    ]
    for prop, short in (("margin", "m"), ("padding", "p")):
        for side, suffixes in SIDES.items():
            for step, size in SPACING.items():
                body = " ".join(f"{prop}{suffix}: {size};" for suffix in suffixes)
                out.append(f".{short}{side}-{step} {{ {body} }}")
    out.append("")
    for name, shades in PALETTE.items():
        for shade, hex_value in shades.items():
            out.append(f".text-{name}-{shade} {{ color: {hex_value}; }}")
            out.append(f".bg-{name}-{shade} {{ background-color: {hex_value}; }}")
            out.append(f".border-{name}-{shade} {{ border-color: {hex_value}; }}")
            out.append(f".hover\\:bg-{name}-{shade}:hover {{ background-color: {hex_value}; }}")
            out.append(f".hover\\:text-{name}-{shade}:hover {{ color: {hex_value}; }}")
    out.append("")
    for name, body in LAYOUT.items():
        out.append(f".{name} {{ {body} }}")
    for step, size in SPACING.items():
        out.append(f".gap-{step} {{ gap: {size}; }}")
    out.append("")
    for name, (size, leading) in TYPE_SCALE.items():
        out.append(f".text-{name} {{ font-size: {size}; line-height: {leading}; }}")
    for weight, value in (("normal", 400), ("medium", 500), ("semibold", 600), ("bold", 700)):
        out.append(f".font-{weight} {{ font-weight: {value}; }}")
    for name, radius in RADII.items():
        out.append(f".rounded{'-' + name if name else ''} {{ border-radius: {radius}; }}")
    for name, shadow in SHADOWS.items():
        out.append(f".shadow{'-' + name if name else ''} {{ box-shadow: {shadow}; }}")
    out.append(COMPONENTS)
    for bp, width in BREAKPOINTS.items():
        out.append(f"@media (min-width: {width}) {{")
        for name, body in LAYOUT.items():
            out.append(f"  .{bp}\\:{name} {{ {body} }}")
        for step, size in SPACING.items():
            out.append(f"  .{bp}\\:p-{step} {{ padding: {size}; }}")
            out.append(f"  .{bp}\\:gap-{step} {{ gap: {size}; }}")
            out.append(f"  .{bp}\\:m-{step} {{ margin: {size}; }}")
        for name, (size, leading) in TYPE_SCALE.items():
            out.append(f"  .{bp}\\:text-{name} {{ font-size: {size}; line-height: {leading}; }}")
        out.append("}")
    out.append("")
    return "\n".join(out)


def main() -> int:
    (STATIC / "img").mkdir(parents=True, exist_ok=True)
    (STATIC / "css").mkdir(parents=True, exist_ok=True)
    (STATIC / "img" / "logo.png").write_bytes(png(LOGO_SIZE, LOGO_SIZE, logo_rows()))
    (STATIC / "css" / "bundle.css").write_text(bundle_css(), encoding="utf-8")
    for path in (STATIC / "img" / "logo.png", STATIC / "css" / "bundle.css"):
        print(f"{path.relative_to(STATIC.parent.parent)}: {path.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
