// Plain-text tables for people: a header row, columns padded to the widest cell, two spaces apart.

export function table(head: string[], rows: string[][]): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  return [head, ...rows].map((r) => r.map((c, i) => (c ?? '').padEnd(w[i]!)).join('  ').trimEnd()).join('\n') + '\n';
}
