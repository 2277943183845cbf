import { describe, expect, it } from 'vitest';
import type { LineageGraphJson } from '../../server/routes/lineage-responses.js';
import { lineageDot, lineageMermaid } from '../../server/routes/lineage-text.js';

/** Two nodes whose labels hold every character that could end a quoted string or be read as markup. */
const graph: LineageGraphJson = {
  anchor: 'artifact:a',
  direction: 'downstream',
  depth: 10,
  truncated: true,
  nodes: [
    {
      ref: 'artifact:a',
      id: 'a',
      depth: 0,
      label: 'Dataset "raw" \\ #1 <b>|x|\nnext',
      kind: 'artifact',
      type: 'Dataset',
      uri: 's3://b/a',
      sha256: null,
      state: 'live',
      createdAt: '2026-01-01T00:00:00.000Z',
    },
    {
      ref: 'deployment:d',
      id: 'd',
      depth: 1,
      label: 'deployment d',
      kind: 'deployment',
      name: 'd',
      model: 'm',
      strategy: 'replace',
      createdAt: '2026-01-01T00:00:00.000Z',
    },
  ],
  edges: [{ from: 'artifact:a', to: 'deployment:d', kind: 'serves', role: 'champion', trafficPercent: 100 }],
};

describe('lineageDot', () => {
  it('escapes quotes, backslashes and line breaks, and says when the graph was cut', () => {
    const dot = lineageDot(graph);
    expect(dot).toContain(
      '"artifact:a" [label="Dataset \\"raw\\" \\\\ #1 <b>|x|\\nnext", shape=box, penwidth=2, style=bold];',
    );
    expect(dot).toContain('"artifact:a" -> "deployment:d" [label="serves: champion 100%"];');
    expect(dot).toContain('label="lineage downstream of artifact:a, depth 10, truncated at 2 nodes";');
  });
});

describe('lineageMermaid', () => {
  it('writes labels with entity codes and on one line, nodes as n0, n1 in order', () => {
    const lines = lineageMermaid(graph).trimEnd().split('\n');
    expect(lines).toEqual([
      'flowchart LR',
      '  %% lineage downstream of artifact:a, depth 10, truncated at 2 nodes',
      '  n0["Dataset #quot;raw#quot; \\ #35;1 #lt;b#gt;#124;x#124; next"]',
      '  n1[["deployment d"]]',
      '  n0 -->|"serves: champion 100%"| n1',
      '  style n0 stroke-width:3px',
    ]);
  });
});
