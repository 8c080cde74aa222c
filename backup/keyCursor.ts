/**
 * The key cursor of a backup's page loop: which rows the next page starts from, which rows of a page
 * are new, and whether keys arrive in order.
 *
 * Pages are read by primary key (milvus.ts queryPage). After a full page the next one starts *at* the
 * last key read (inclusive), so rows sharing that key on both sides of a page boundary are all read;
 * the rows read twice are recognised by content (a digest of the whole row), not by position, since a
 * server owes no order among equal keys. Such a page asks for the rows it reads again on top of a full
 * page, so it always has new rows to offer; a page made only of rows already read cannot repeat
 * forever: it ends the partition when it was not full, and otherwise (a key with more rows than one
 * query returns) the cursor moves past the key (exclusive).
 *
 * Duplicate keys mostly never reach the cursor: Milvus Lite 2.5.102 (measured) keeps every row inserted
 * with a repeated key and counts them all in count(*), but its queries return only the newest row of
 * each key. {@link keyCensus} tells such hidden rows from rows that were missed, so a count mismatch can
 * say which happened.
 */
import { createHash } from "node:crypto";
import { sliceRows } from "./columns";
import { WorkerError } from "./errors";
import type { CollectionDef } from "./format";

/** Compares two primary keys as the server orders them (int64 numerically, varchar by UTF-8 bytes). */
export function compareKeys(a: string, b: string, varchar: boolean): number {
  if (varchar) return Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
  const x = BigInt(a);
  const y = BigInt(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

import {
  liteQuote,
  MAX_QUERY_WINDOW,
  primaryField,
  showKey,
  type Milvus,
  type QueryResponse,
} from "./milvus";

/** Where the next page starts. */
export interface PageBound {
  /** Rows with keys greater than this one (from this one when `inclusive`); null: from the first row. */
  key: string | null;
  inclusive: boolean;
  /**
   * The same position for a server that cannot write `key` in a filter (Milvus Lite: a carriage return
   * not followed by a line feed): rows with keys greater than `anchor` (all rows when null), after
   * skipping the first `skip` of them. Equal to `key` with skip 0 whenever `key` can be written.
   */
  anchor: string | null;
  skip: number;
  /**
   * Rows to ask for: the page size plus the rows an inclusive page reads again (at most 16,384; with
   * `skip`, queryPage keeps offset plus limit within 16,384).
   */
  limit: number;
}

export interface AcceptedPage {
  /** Indexes of the page's rows that were not read before, ascending. */
  keep: number[];
  /** The last key read so far. */
  last: string | undefined;
  /** Whether another page may hold more rows. */
  more: boolean;
}

/** The primary keys of a page, as strings (int64 keys arrive as strings; kept so, beyond 2^53). */
export function pageKeys(res: QueryResponse, pkName: string): string[] {
  const s = res.fields_data.find((f) => f.field_name === pkName)?.scalars;
  const holder = (s?.long_data ?? s?.string_data) as { data?: (string | number)[] } | undefined;
  return (holder?.data ?? []).map(String);
}

export class KeyCursor {
  private last: string | undefined;
  /** Rows read with key `last`, and the digests of their contents (a multiset). */
  private lastCount = 0;
  private lastRows = new Map<string, number>();
  private inclusive = false;
  /** The last key read that every server can write in a filter, and the rows read with greater keys. */
  private anchor: string | null = null;
  private sinceAnchor = 0;
  private dups = 0;
  private crowded: string | undefined;

  constructor(
    readonly pkName: string,
    readonly varcharPk: boolean,
    readonly pageRows: number,
    /** Prefix of error messages, e.g. "backup of docs". */
    readonly what = "reading by primary key",
  ) {}

  /** Rows read that repeat the primary key of a row read before them. */
  get duplicateRows(): number {
    return this.dups;
  }

  /**
   * A key with more rows than one query can return (16,384): the cursor had to move past it, and rows
   * with that key beyond those may be unread (a count check then fails). Undefined normally.
   */
  get crowdedKey(): string | undefined {
    return this.crowded;
  }

  /**
   * Where the next page starts. An inclusive page asks for the rows already read at its key on top of
   * a page of new ones, so it always has room to move on (up to Milvus's 16,384-row window).
   */
  bound(): PageBound {
    const key = this.last;
    if (key === undefined)
      return { key: null, inclusive: false, anchor: null, skip: 0, limit: this.pageRows };
    const again = this.inclusive ? this.lastCount : 0;
    const writable = this.writable(key);
    const skip = writable ? 0 : this.sinceAnchor - again;
    const limit = Math.min(this.pageRows + again, MAX_QUERY_WINDOW);
    return { key, inclusive: this.inclusive, anchor: writable ? key : this.anchor, skip, limit };
  }

  /** The rows a query for `b` returns when full: queryPage keeps offset plus limit within the window. */
  private fullPage(b: PageBound): number {
    return b.key !== null && !this.writable(b.key) ? Math.min(b.limit, MAX_QUERY_WINDOW - b.skip) : b.limit;
  }

  /** Takes one page, as queryPage returned it for {@link bound}. */
  accept(res: QueryResponse): AcceptedPage {
    const asked = this.bound();
    const keys = pageKeys(res, this.pkName);
    const n = keys.length;
    const keep: number[] = [];
    if (n === 0) return { keep, last: this.last, more: false };
    // Fields in name order: Milvus 2.3.5 returns a query's fields_data in varying order (pk, vec on one
    // page, vec, pk on the next, with no writes running: measured here, test/lanes.test.ts "awkward
    // varchar keys"), so a digest in the order returned missed 12 of 330 rows read again at page bounds.
    const digest = (i: number) =>
      createHash("sha256")
        .update(
          JSON.stringify(
            sliceRows(res.fields_data, n, [i]).sort((a, b) =>
              a.field_name < b.field_name ? -1 : a.field_name > b.field_name ? 1 : 0,
            ),
          ),
        )
        .digest("base64");
    // Rows of the boundary key read before: an inclusive page starts with them again.
    const before = this.last;
    const seen = asked.inclusive && before !== undefined ? new Map(this.lastRows) : undefined;
    let prev = before;
    let fresh: number[] = [];
    for (let i = 0; i < n; i++) {
      const k = keys[i] ?? "";
      if (prev !== undefined && this.compare(k, prev) < 0) {
        throw new WorkerError(
          `${this.what}: the server returned primary keys out of order (${this.show(k)} after ${this.show(prev)})`,
        );
      }
      prev = k;
      if (seen && k === before && this.last === before) {
        const d = digest(i);
        const times = seen.get(d) ?? 0;
        if (times > 0) {
          seen.set(d, times - 1);
          continue;
        }
      }
      if (k === this.last) {
        this.lastCount++;
        this.dups++;
      } else {
        this.last = k;
        this.lastCount = 1;
        this.lastRows = new Map();
        fresh = [];
      }
      fresh.push(i);
      keep.push(i);
      if (this.writable(k)) {
        if (k !== this.anchor) {
          this.anchor = k;
          this.sinceAnchor = 0;
        }
      } else {
        this.sinceAnchor++;
      }
    }
    const full = n >= this.fullPage(asked);
    if (keep.length === 0) {
      // Nothing new: every row at or after the boundary key was read. A full page of them means the key
      // has more rows than one query returns; move past it rather than read the same page forever.
      this.inclusive = false;
      if (full) this.crowded ??= this.last;
      return { keep, last: this.last, more: full };
    }
    this.inclusive = full;
    if (full) {
      for (const i of fresh) {
        const d = digest(i);
        this.lastRows.set(d, (this.lastRows.get(d) ?? 0) + 1);
      }
    }
    return { keep, last: this.last, more: full };
  }

  private compare(a: string, b: string): number {
    return compareKeys(a, b, this.varcharPk);
  }

  /** Whether every server can write the key in a filter (only Milvus Lite cannot write a lone CR). */
  private writable(key: string): boolean {
    return !this.varcharPk || liteQuote(key) !== null;
  }

  private show(key: string): string {
    return this.varcharPk ? showKey(key) : key;
  }
}

export interface KeyCensus {
  /** Rows the pages returned. */
  rows: number;
  /**
   * Rows count(*) counts under the keys returned: more than `rows` when the server keeps rows it never
   * returns because a newer row has the same key. Rows of keys the server cannot write in a filter count
   * as returned.
   */
  counted: number;
  /** Rows whose key could not be written in a count filter (Milvus Lite: a lone CR). */
  unchecked: number;
  /** See {@link KeyCursor.crowdedKey}. */
  crowdedKey: string | undefined;
}

/**
 * Reads a partition's primary keys page by page, as a backup does, and counts the rows stored under the
 * keys of each page. For a backup whose rows read and count(*) disagree: `counted` equal to count(*)
 * means every row not read shares its key with a row that was (duplicate keys); less means rows with
 * other keys were missed or the collection changed.
 */
export async function keyCensus(
  milvus: Pick<Milvus, "queryPage" | "countKeys">,
  def: CollectionDef,
  partition: string | undefined,
  pageRows: number,
  snapshot: string | null,
): Promise<KeyCensus> {
  const pk = primaryField(def);
  const cursor = new KeyCursor(
    pk.name,
    pk.dataType === "VarChar",
    pageRows,
    `counting the keys of ${def.name}`,
  );
  const census: KeyCensus = { rows: 0, counted: 0, unchecked: 0, crowdedKey: undefined };
  let lastCounted: string | undefined;
  for (;;) {
    const res = await milvus.queryPage(def, partition, cursor.bound(), pageRows, [pk.name], snapshot);
    const page = cursor.accept(res);
    const keys = pageKeys(res, pk.name);
    const kept = page.keep.map((i) => keys[i] ?? "");
    census.rows += kept.length;
    // Keys arrive in order, so only the previous page's last key can come again; count each key once.
    const fresh = [...new Set(kept)].filter((k) => k !== lastCounted);
    if (fresh.length > 0) {
      const c = await milvus.countKeys(def, partition, fresh, snapshot);
      census.counted += c.rows;
      if (c.unwritten > 0) {
        const rows = kept.filter((k) => pk.dataType === "VarChar" && liteQuote(k) === null).length;
        census.unchecked += rows;
        census.counted += rows;
      }
      lastCounted = fresh[fresh.length - 1];
    }
    if (!page.more) break;
  }
  census.crowdedKey = cursor.crowdedKey;
  return census;
}
