// Worker threads start from a line of source (`new Worker(code, { eval: true })`): this makes
// that line for a module beside the caller — the .js one when running compiled (dist/), else the
// .ts one under tsx, as bin/mailseal.js does.

/** Boot code for the worker module `name` (no extension) in the directory of `from` (import.meta.url). */
export function workerBoot(from: string, name: string): string {
  const compiled = from.endsWith('.js');
  const url = new URL(`./${name}${compiled ? '.js' : '.ts'}`, from).href;
  if (compiled) return `import(${JSON.stringify(url)})`;
  return `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))})` +
    `.then((m) => { m.register(); return import(${JSON.stringify(url)}); })`;
}
