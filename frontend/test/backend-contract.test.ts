/**
 * The pair and role lists the tab hard-codes against the backend's: `TERMS` and `ROLES` in src/types.ts must equal
 * the tuples of the same names in tb_matmul_explainer/metadata.py (read from the file's text, no Python needed).
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROLES, TERMS } from '../src/types';

const METADATA = resolve(import.meta.dirname, '../../tb_matmul_explainer/metadata.py');

/**
 * The strings of the module-level tuple `NAME = ("a", "b", ...)` in Python source (one line or several, either
 * quote, comments and a trailing comma allowed). Throws naming `name` when there is no such tuple of strings.
 */
export function pythonStringTuple(source: string, name: string): string[] {
  const m = new RegExp(`^${name}\\s*(?::[^=\\n]*)?=\\s*\\(([^)]*)\\)`, 'm').exec(source);
  if (!m) throw new Error(`no tuple literal \`${name} = (...)\` in metadata.py`);
  const body = m[1].replace(/#[^\n]*/g, '');
  const items = [...body.matchAll(/(["'])((?:(?!\1).)*)\1/g)].map((x) => x[2]);
  const rest = body.replace(/(["'])((?:(?!\1).)*)\1/g, '').replace(/[\s,]/g, '');
  if (rest) throw new Error(`\`${name}\` in metadata.py is not a tuple of plain strings (left over: ${rest})`);
  return items;
}

describe('backend contract (tb_matmul_explainer/metadata.py)', () => {
  const source = readFileSync(METADATA, 'utf8');

  it('parses tuple literals on one line or several', () => {
    expect(pythonStringTuple('X = ("a", \'b\',)\n', 'X')).toEqual(['a', 'b']);
    expect(pythonStringTuple('X: tuple[str, ...] = (\n    "a",  # first\n    "b",\n)\n', 'X')).toEqual(['a', 'b']);
    expect(() => pythonStringTuple('Y = ("a",)', 'X')).toThrow(/X/);
    expect(() => pythonStringTuple('X = ("a", B)', 'X')).toThrow(/not a tuple of plain strings/);
  });

  it('TERMS in src/types.ts equals metadata.TERMS', () => {
    expect([...TERMS], 'src/types.ts TERMS must equal TERMS in tb_matmul_explainer/metadata.py (same pairs, same order)').toEqual(
      pythonStringTuple(source, 'TERMS'),
    );
  });

  it('ROLES in src/types.ts equals metadata.ROLES', () => {
    expect(
      [...ROLES],
      'src/types.ts ROLES must equal ROLES in tb_matmul_explainer/metadata.py: whoever adds a role to one adds it to the ' +
        'other, in the same order (and gives it a label in ROLE_LABELS and default operands in src/state.ts)',
    ).toEqual(pythonStringTuple(source, 'ROLES'));
  });
});
