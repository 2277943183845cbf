/** One page of a list: at most `limit` items after skipping `offset`, in the list's stable order. */
export interface Page {
  readonly limit: number;
  readonly offset: number;
}
