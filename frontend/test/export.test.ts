import { describe, expect, it } from 'vitest';
import { csvField, fileName, gridToCsv } from '../src/export';
import { makeGrid, set } from '../src/grid';

describe('CSV export', () => {
  it('writes numbers exactly and missing as empty', () => {
    expect(csvField(0.1 + 0.2)).toBe('0.30000000000000004');
    expect(csvField(-3)).toBe('-3');
    expect(csvField(NaN)).toBe('');
    expect(csvField(null)).toBe('');
  });

  it('quotes fields with commas, quotes, newlines or edge spaces', () => {
    expect(csvField('a,b')).toBe('"a,b"');
    expect(csvField('say "hi"')).toBe('"say ""hi"""');
    expect(csvField('two\nlines')).toBe('"two\nlines"');
    expect(csvField(' pad')).toBe('" pad"');
    expect(csvField('plain')).toBe('plain');
  });

  it('defuses spreadsheet formulas in names', () => {
    expect(csvField('=HYPERLINK("x")')).toBe('"\'=HYPERLINK(""x"")"');
    expect(csvField('+1')).toBe("'+1");
    expect(csvField('@sum')).toBe("'@sum");
  });

  it('gridToCsv: header, one line per row, notes column when any row has a note', () => {
    const g = makeGrid(2, 2, ['dense', '<img src=x>'], ['0', '100']);
    set(g, 0, 0, 0.25);
    set(g, 0, 1, 0.5);
    set(g, 1, 1, 1);
    expect(gridToCsv(g, 'layer')).toBe('layer,0,100\r\ndense,0.25,0.5\r\n<img src=x>,,1\r\n');
    g.rowNotes = [null, 'missing in b'];
    expect(gridToCsv(g, 'layer')).toBe('layer,0,100,note\r\ndense,0.25,0.5,\r\n<img src=x>,,1,missing in b\r\n');
  });

  it('file names are safe whatever the run is called', () => {
    expect(fileName(['<img src=x onerror=alert(1)>', 'forward', 'overview'], 'png')).toBe('img_src_x_onerror_alert_1_forward_overview.png');
    expect(fileName(['../../etc/passwd'], 'csv')).toBe('etc_passwd.csv');
    expect(fileName([''], 'csv')).toBe('matmul_explainer.csv');
  });
});
