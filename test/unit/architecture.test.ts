import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..', '..');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sourceFiles(path);
    return /\.(ts|tsx)$/.test(name) ? [path] : [];
  });
}

describe('architecture rules', () => {
  it('src/engine has no DOM, React or UI dependency (it must run in Node and in a worker)', () => {
    const offenders: string[] = [];
    for (const file of sourceFiles(join(root, 'src', 'engine'))) {
      const text = readFileSync(file, 'utf8');
      const rel = relative(root, file);
      if (/from ['"](react|react-dom|zustand|comlink)['"/]/.test(text)) offenders.push(`${rel}: imports a UI/RPC package`);
      if (/from ['"]\.\.\/(ui|stores)\//.test(text)) offenders.push(`${rel}: imports UI code`);
      if (/\b(document|window|localStorage)\./.test(text)) offenders.push(`${rel}: touches the DOM`);
    }
    expect(offenders).toEqual([]);
  });

  it('the UI reaches the engine only through the worker client', () => {
    const offenders = [...sourceFiles(join(root, 'src', 'ui')), ...sourceFiles(join(root, 'src', 'stores'))]
      .filter((file) => /from ['"][./]*engine\//.test(readFileSync(file, 'utf8')))
      .map((file) => relative(root, file));
    expect(offenders).toEqual([]);
  });
});
