/**
 * Converts between Milvus's column-oriented `FieldData` (query results, insert requests) and the
 * binary column layout of chunk files (see format.ts).
 */
import { WorkerError } from "./errors";
import type { ColumnHeader, ColumnKind, EncodedColumn, FieldDef } from "./format";
import { packItems, unpackItems } from "./format";
import type { RawFieldData } from "./milvus";

export const DATA_TYPE_CODES: Record<string, number> = {
  Bool: 1,
  Int8: 2,
  Int16: 3,
  Int32: 4,
  Int64: 5,
  Float: 10,
  Double: 11,
  String: 20,
  VarChar: 21,
  Array: 22,
  JSON: 23,
  BinaryVector: 100,
  FloatVector: 101,
  Float16Vector: 102,
  BFloat16Vector: 103,
  SparseFloatVector: 104,
  Int8Vector: 105,
};

const SCALAR_KEYS: Record<string, string> = {
  Bool: "bool_data",
  Int8: "int_data",
  Int16: "int_data",
  Int32: "int_data",
  Int64: "long_data",
  Float: "float_data",
  Double: "double_data",
  String: "string_data",
  VarChar: "string_data",
  JSON: "json_data",
  Array: "array_data",
};

const BYTES_VECTOR_KEYS: Record<string, string> = {
  BinaryVector: "binary_vector",
  Float16Vector: "float16_vector",
  BFloat16Vector: "bfloat16_vector",
  Int8Vector: "int8_vector",
};

export const DYNAMIC_FIELD = "$meta";

export interface ColumnSpec {
  name: string;
  kind: ColumnKind;
  dataType: string;
  dim?: number;
  elementType?: string;
  isDynamic?: boolean;
  nullable: boolean;
}

export function isVectorType(t: string): boolean {
  return t.endsWith("Vector");
}

function kindOf(dataType: string): ColumnKind {
  switch (dataType) {
    case "FloatVector":
      return "f32vec";
    case "BinaryVector":
    case "Float16Vector":
    case "BFloat16Vector":
    case "Int8Vector":
      return "bytesvec";
    case "SparseFloatVector":
      return "sparse";
    case "Bool":
      return "bool";
    case "Int8":
    case "Int16":
    case "Int32":
      return "int32";
    case "Int64":
      return "int64";
    case "Float":
      return "float";
    case "Double":
      return "double";
    case "String":
    case "VarChar":
      return "string";
    case "JSON":
      return "json";
    case "Array":
      return "array";
    default:
      throw new WorkerError(`fields of type ${dataType} are not supported by this worker`);
  }
}

/** The columns a backup stores: every field except function outputs (the server recomputes those). */
export function columnSpecs(fields: FieldDef[], enableDynamicField: boolean): ColumnSpec[] {
  const specs: ColumnSpec[] = fields
    .filter((f) => !f.isFunctionOutput)
    .map((f) => ({
      name: f.name,
      kind: kindOf(f.dataType),
      dataType: f.dataType,
      dim: "dim" in f.typeParams ? Number(f.typeParams.dim) : undefined,
      elementType: f.elementType,
      nullable: f.nullable,
    }));
  if (enableDynamicField) {
    specs.push({ name: DYNAMIC_FIELD, kind: "json", dataType: "JSON", isDynamic: true, nullable: false });
  }
  return specs;
}

/** Bytes per row of a fixed-width column's values. */
function fixedWidth(spec: { kind: ColumnKind; dataType: string; dim?: number }): number | undefined {
  const dim = spec.dim ?? 0;
  switch (spec.kind) {
    case "f32vec":
      return dim * 4;
    case "bytesvec":
      if (spec.dataType === "BinaryVector") return dim / 8;
      if (spec.dataType === "Int8Vector") return dim;
      return dim * 2;
    case "bool":
      return 1;
    case "int32":
    case "float":
      return 4;
    case "int64":
    case "double":
      return 8;
    default:
      return undefined;
  }
}

function scalarValues(fd: RawFieldData, key: string): unknown[] {
  const holder = fd.scalars?.[key] as { data?: unknown[] } | undefined;
  return holder?.data ?? [];
}

/**
 * The rows `keep` (indexes into `rows`, ascending) of a query answer's column-oriented fields, in the
 * same shape, so a page with some rows dropped (keyCursor.ts) feeds {@link ColumnAccumulator.add} and
 * the backup's page digest like any page. Nullable columns may come with a value per row or only the
 * values of non-null rows; both are kept as they came.
 */
export function sliceRows(fields: RawFieldData[], rows: number, keep: number[]): RawFieldData[] {
  return fields.map((fd) => {
    const out: RawFieldData = { ...fd };
    const valid = fd.valid_data && fd.valid_data.length === rows ? fd.valid_data : undefined;
    if (valid) out.valid_data = keep.map((i) => valid[i] ?? false);
    const validRows = valid ? valid.filter(Boolean).length : rows;
    // Value index of each row when a column holds values of non-null rows only.
    let compact: number[] | undefined;
    const compactIndex = () => {
      if (!compact) {
        compact = [];
        let n = 0;
        for (let i = 0; i < rows; i++) compact.push(valid?.[i] ? n++ : -1);
      }
      return compact;
    };
    /** Where each kept row's value is in a column of `length` values of `width` entries (non-null rows only). */
    const at = (length: number, width: number): number[] => {
      const perRow = length === rows * width || validRows === rows;
      const index = perRow ? undefined : compactIndex();
      return keep.map((i) => (index ? (index[i] ?? -1) : i)).filter((j) => j >= 0);
    };
    const pickArray = <T>(values: T[], width: number): T[] =>
      at(values.length, width).flatMap((j) => values.slice(j * width, (j + 1) * width));
    if (fd.scalars) {
      const scalars: Record<string, unknown> = { ...fd.scalars };
      for (const [key, holder] of Object.entries(fd.scalars)) {
        const data = (holder as { data?: unknown } | null)?.data;
        if (key.endsWith("_data") && Array.isArray(data)) {
          scalars[key] = { ...(holder as object), data: pickArray(data, 1) };
        }
      }
      out.scalars = scalars as RawFieldData["scalars"];
    }
    if (fd.vectors) {
      const v = fd.vectors;
      const vectors: Record<string, unknown> = { ...v };
      const dim = Number(v.dim ?? 0);
      const floats = (v.float_vector as { data?: number[] } | undefined)?.data;
      if (floats) vectors.float_vector = { ...(v.float_vector as object), data: pickArray(floats, dim) };
      const sparse = (v.sparse_float_vector as { contents?: Buffer[] } | undefined)?.contents;
      if (sparse) {
        vectors.sparse_float_vector = {
          ...(v.sparse_float_vector as object),
          contents: pickArray(sparse, 1),
        };
      }
      for (const [dataType, key] of Object.entries(BYTES_VECTOR_KEYS)) {
        const bytes = v[key];
        const width = fixedWidth({ kind: "bytesvec", dataType, dim }) ?? 0;
        if (!Buffer.isBuffer(bytes) || width <= 0) continue;
        vectors[key] = Buffer.concat(
          at(bytes.length, width).map((j) => bytes.subarray(j * width, (j + 1) * width)),
        );
      }
      out.vectors = vectors as RawFieldData["vectors"];
    }
    return out;
  });
}

/** Collects one column's values over several pages until a chunk is cut. */
export class ColumnAccumulator {
  private parts: Buffer[] = [];
  private valid: number[] = [];
  private count = 0;
  rawBytes = 0;

  constructor(readonly spec: ColumnSpec) {}

  add(fd: RawFieldData | undefined, rows: number): void {
    const s = this.spec;
    if (!fd) {
      throw new WorkerError(`the server returned no data for field ${s.name}`);
    }
    let keep: boolean[] | undefined;
    if (s.nullable) {
      const v =
        fd.valid_data && fd.valid_data.length === rows ? fd.valid_data : new Array<boolean>(rows).fill(true);
      for (const b of v) this.valid.push(b ? 1 : 0);
      this.rawBytes += rows;
      keep = v;
    }
    let buf: Buffer;
    let n: number;
    switch (s.kind) {
      case "f32vec": {
        const data = (fd.vectors?.float_vector as { data?: number[] } | undefined)?.data ?? [];
        buf = Buffer.from(Float32Array.from(data).buffer);
        n = data.length / (s.dim ?? 1);
        break;
      }
      case "bytesvec": {
        const src = fd.vectors?.[BYTES_VECTOR_KEYS[s.dataType] ?? ""] as Buffer | undefined;
        buf = Buffer.from(src ?? Buffer.alloc(0));
        n = buf.length / (fixedWidth(s) ?? 1);
        break;
      }
      case "sparse": {
        const contents =
          (fd.vectors?.sparse_float_vector as { contents?: Buffer[] } | undefined)?.contents ?? [];
        buf = packItems(contents);
        n = contents.length;
        break;
      }
      default: {
        let values = scalarValues(fd, SCALAR_KEYS[s.dataType] ?? "");
        // Stored compactly: only the values of non-null rows (the way inserts send them).
        if (keep && values.length === rows) values = values.filter((_, i) => keep[i]);
        buf = encodeScalars(s, values);
        n = values.length;
      }
    }
    if (!keep && n !== rows) {
      throw new WorkerError(`field ${s.name}: the server returned ${n} values for ${rows} rows`);
    }
    this.parts.push(buf);
    this.count += n;
    this.rawBytes += buf.length;
  }

  /** Returns the accumulated column and resets the accumulator. */
  take(): EncodedColumn {
    const s = this.spec;
    const parts = s.nullable ? [Buffer.from(this.valid), ...this.parts] : this.parts;
    const col: EncodedColumn = {
      header: {
        name: s.name,
        kind: s.kind,
        dataType: s.dataType,
        dim: s.dim,
        elementType: s.elementType,
        isDynamic: s.isDynamic,
        count: this.count,
        hasValid: s.nullable,
      },
      parts,
    };
    this.parts = [];
    this.valid = [];
    this.count = 0;
    this.rawBytes = 0;
    return col;
  }
}

function encodeScalars(s: ColumnSpec, values: unknown[]): Buffer {
  switch (s.kind) {
    case "bool":
      return Buffer.from(values.map((v) => (v ? 1 : 0)));
    case "int32":
      return Buffer.from(Int32Array.from(values as number[]).buffer);
    case "int64": {
      // Int64 values arrive as strings; BigInt keeps every digit (auto-ID keys exceed 2^53).
      const a = new BigInt64Array(values.length);
      for (let i = 0; i < values.length; i++) a[i] = BigInt(String(values[i]));
      return Buffer.from(a.buffer);
    }
    case "float":
      return Buffer.from(Float32Array.from(values as number[]).buffer);
    case "double":
      return Buffer.from(Float64Array.from(values as number[]).buffer);
    case "string":
      return packItems((values as string[]).map((v) => Buffer.from(v, "utf8")));
    case "json":
      return packItems((values as Buffer[]).map((v) => Buffer.from(v)));
    case "array":
      return packItems(
        values.map((v) => Buffer.from(JSON.stringify(arrayElements(v as Record<string, unknown>)), "utf8")),
      );
    default:
      throw new WorkerError(`field ${s.name}: unexpected column kind ${s.kind}`);
  }
}

/** The element values of one array cell (a ScalarField), int64 elements kept as strings. */
function arrayElements(cell: Record<string, unknown> | undefined): unknown[] {
  if (!cell) return [];
  const key = typeof cell.data === "string" ? cell.data : Object.keys(cell).find((k) => k.endsWith("_data"));
  if (!key) return [];
  const holder = cell[key] as { data?: unknown[] } | undefined;
  const data = holder?.data ?? [];
  return key === "long_data" ? data.map((v) => String(v)) : data;
}

/** A decoded column of one chunk, sliceable by row into insert-ready FieldData. */
export class ColumnReader {
  private readonly valid?: Buffer;
  /** validBefore[i] = number of non-null rows before row i (nullable columns only). */
  private readonly validBefore?: Uint32Array;
  private readonly values: Buffer;
  private readonly items?: Buffer[];

  constructor(
    readonly header: ColumnHeader,
    raw: Buffer,
    readonly rows: number,
    what: string,
  ) {
    let body = raw;
    if (header.hasValid) {
      this.valid = raw.subarray(0, rows);
      body = raw.subarray(rows);
      this.validBefore = new Uint32Array(rows + 1);
      for (let i = 0; i < rows; i++)
        this.validBefore[i + 1] = (this.validBefore[i] ?? 0) + (this.valid[i] ?? 0);
    }
    this.values = body;
    const width = fixedWidth(header);
    if (width !== undefined) {
      if (body.length !== width * header.count) {
        throw new WorkerError(
          `${what}: column ${header.name} has ${body.length} bytes, expected ${width * header.count}`,
        );
      }
    } else {
      this.items = unpackItems(body, header.count, `${what}: column ${header.name}`);
    }
    const expected = header.hasValid ? (this.validBefore?.[rows] ?? 0) : rows;
    if (header.count !== expected) {
      throw new WorkerError(`${what}: column ${header.name} has ${header.count} values for ${expected} rows`);
    }
  }

  /** Insert-ready FieldData of rows [from, to). */
  fieldData(from: number, to: number): object {
    const h = this.header;
    const a = this.validBefore ? (this.validBefore[from] ?? 0) : from;
    const b = this.validBefore ? (this.validBefore[to] ?? 0) : to;
    const out: Record<string, unknown> = {
      type: DATA_TYPE_CODES[h.dataType],
      field_name: h.name,
      is_dynamic: Boolean(h.isDynamic),
    };
    if (this.valid) out.valid_data = Array.from(this.valid.subarray(from, to), (v) => v === 1);
    const width = fixedWidth(h) ?? 0;
    const bytes = () => this.values.subarray(a * width, b * width);
    switch (h.kind) {
      case "f32vec": {
        const buf = bytes();
        const f = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length));
        out.vectors = { dim: h.dim, float_vector: { data: Array.from(f) } };
        break;
      }
      case "bytesvec":
        out.vectors = { dim: h.dim, [BYTES_VECTOR_KEYS[h.dataType] ?? ""]: Buffer.from(bytes()) };
        break;
      case "sparse": {
        const rows = (this.items ?? []).slice(a, b);
        let dim = 0;
        // A sparse row is (u32 index, f32 value) pairs; the batch's dim is the largest index + 1.
        for (const r of rows)
          for (let o = 0; o + 8 <= r.length; o += 8) dim = Math.max(dim, r.readUInt32LE(o) + 1);
        out.vectors = { dim, sparse_float_vector: { dim, contents: rows } };
        break;
      }
      default:
        out.scalars = { [SCALAR_KEYS[h.dataType] ?? ""]: this.scalarSlice(a, b, width) };
    }
    return out;
  }

  private scalarSlice(a: number, b: number, width: number): object {
    const h = this.header;
    const buf = this.values.subarray(a * width, b * width);
    const copy = () => buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length);
    switch (h.kind) {
      case "bool":
        return { data: Array.from(buf, (v) => v === 1) };
      case "int32":
        return { data: Array.from(new Int32Array(copy())) };
      case "int64":
        return { data: Array.from(new BigInt64Array(copy()), (v) => v.toString()) };
      case "float":
        return { data: Array.from(new Float32Array(copy())) };
      case "double":
        return { data: Array.from(new Float64Array(copy())) };
      case "string":
        return { data: (this.items ?? []).slice(a, b).map((x) => x.toString("utf8")) };
      case "json":
        return { data: (this.items ?? []).slice(a, b) };
      case "array": {
        const et = h.elementType ?? "";
        const key = SCALAR_KEYS[et] ?? "";
        return {
          element_type: DATA_TYPE_CODES[et],
          data: (this.items ?? [])
            .slice(a, b)
            .map((x) => ({ [key]: { data: JSON.parse(x.toString("utf8")) as unknown[] } })),
        };
      }
      default:
        throw new WorkerError(`column ${h.name}: unexpected kind ${h.kind}`);
    }
  }

  /** Approximate bytes of rows [from, to), to keep insert requests under the server's message limit. */
  byteSize(from: number, to: number): number {
    const width = fixedWidth(this.header);
    if (width !== undefined) return (to - from) * width;
    let n = 0;
    for (const x of (this.items ?? []).slice(from, to)) n += x.length + 4;
    return n;
  }
}
