/** How the serving benchmark writes numbers for people: '—' where there is none. */

/** A whole number with thousands separators. */
export const fmtInt = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '—');
/** Milliseconds: two decimals below 10, one above. */
export const fmtMs = (n: number) => (Number.isFinite(n) ? (n < 10 ? n.toFixed(2) : n.toFixed(1)) : '—');
/** Cores used on average, two decimals. */
export const fmtCores = (n: number | undefined) => (n !== undefined && Number.isFinite(n) ? n.toFixed(2) : '—');
