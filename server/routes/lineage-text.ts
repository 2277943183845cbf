/**
 * A lineage graph as text for a diagram tool: Graphviz DOT (`dot -Tsvg`) or a Mermaid flowchart (GitHub and most
 * wikis draw it inline). Both read the API's JSON shape, so what they draw is exactly what `format=json` answers.
 */
import type { LineageEdgeJson, LineageGraphJson, LineageNodeJson } from './lineage-responses.js';

export const LINEAGE_FORMATS = ['json', 'dot', 'mermaid'] as const;
export type LineageFormat = (typeof LINEAGE_FORMATS)[number];

/** The content type of each text format: Graphviz's registered type, and plain text for Mermaid (which has none). */
export const LINEAGE_TEXT_TYPES = {
  dot: 'text/vnd.graphviz; charset=utf-8',
  mermaid: 'text/plain; charset=utf-8',
} as const satisfies Record<Exclude<LineageFormat, 'json'>, string>;

const DOT_SHAPES: Record<LineageNodeJson['kind'], string> = {
  artifact: 'box',
  execution: 'ellipse',
  run: 'folder',
  model_version: 'box3d',
  deployment: 'doubleoctagon',
};

function edgeLabel(edge: LineageEdgeJson): string {
  const traffic = edge.trafficPercent === null ? '' : ` ${edge.trafficPercent}%`;
  return edge.role === null ? edge.kind : `${edge.kind}: ${edge.role}${traffic}`;
}

function summary(graph: LineageGraphJson): string {
  const cut = graph.truncated ? `, truncated at ${graph.nodes.length} nodes` : '';
  return `lineage ${graph.direction} of ${graph.anchor}, depth ${graph.depth}${cut}`;
}

/** A DOT double-quoted string: backslashes and quotes escaped, line breaks as `\n` (DOT's centred line break). */
function dotString(text: string): string {
  return `"${text.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\r?\n/g, '\\n')}"`;
}

/** Graphviz DOT: node ids are the refs; the anchor is drawn bold. */
export function lineageDot(graph: LineageGraphJson): string {
  const lines = [
    `// ${summary(graph)}`,
    'digraph lineage {',
    '  rankdir=LR;',
    '  node [fontname="Helvetica", fontsize=10];',
    '  edge [fontname="Helvetica", fontsize=9];',
  ];
  if (graph.truncated) lines.push(`  label=${dotString(summary(graph))};`);
  for (const node of graph.nodes) {
    const bold = node.ref === graph.anchor ? ', penwidth=2, style=bold' : '';
    lines.push(`  ${dotString(node.ref)} [label=${dotString(node.label)}, shape=${DOT_SHAPES[node.kind]}${bold}];`);
  }
  for (const edge of graph.edges) {
    lines.push(`  ${dotString(edge.from)} -> ${dotString(edge.to)} [label=${dotString(edgeLabel(edge))}];`);
  }
  lines.push('}');
  return `${lines.join('\n')}\n`;
}

/**
 * Mermaid text in quotes: its entity codes for the characters that would end the string or be read as markup, and
 * a space for a line break (a flowchart statement is one line).
 */
function mermaidString(text: string): string {
  const escaped = text
    .replace(/#/g, '#35;')
    .replace(/"/g, '#quot;')
    .replace(/</g, '#lt;')
    .replace(/>/g, '#gt;')
    .replace(/\|/g, '#124;')
    .replace(/[\r\n]+/g, ' ');
  return `"${escaped}"`;
}

const MERMAID_SHAPES: Record<LineageNodeJson['kind'], (label: string) => string> = {
  artifact: (label) => `[${label}]`,
  execution: (label) => `([${label}])`,
  run: (label) => `{{${label}}}`,
  model_version: (label) => `[(${label})]`,
  deployment: (label) => `[[${label}]]`,
};

/** A Mermaid flowchart: refs contain `:`, so nodes are `n0`, `n1`, ... in the JSON's order (the anchor is `n0`). */
export function lineageMermaid(graph: LineageGraphJson): string {
  const ids = new Map(graph.nodes.map((node, index) => [node.ref, `n${index}`]));
  const lines = ['flowchart LR', `  %% ${summary(graph).replace(/[\r\n]+/g, ' ')}`];
  for (const node of graph.nodes) {
    lines.push(`  ${ids.get(node.ref)!}${MERMAID_SHAPES[node.kind](mermaidString(node.label))}`);
  }
  for (const edge of graph.edges) {
    const from = ids.get(edge.from);
    const to = ids.get(edge.to);
    if (from && to) lines.push(`  ${from} -->|${mermaidString(edgeLabel(edge))}| ${to}`);
  }
  const anchor = ids.get(graph.anchor);
  if (anchor) lines.push(`  style ${anchor} stroke-width:3px`);
  return `${lines.join('\n')}\n`;
}
