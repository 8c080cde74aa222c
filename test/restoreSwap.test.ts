/**
 * How a verified restore takes over an existing collection's name on a server that renames (Milvus;
 * Milvus Lite only pretends). A stand-in server keeps collections by id, with aliases pointing at ids
 * and renames keeping the id, as Milvus does (aliases follow the collection, not its name; a collection
 * with aliases cannot be dropped).
 */
import * as assert from "node:assert/strict";
import { Log } from "../backup/log";
import { SwapRollbackError, swapIntoPlace } from "../backup/restore";

class FakeMilvus {
  private nextId = 1;
  readonly byName = new Map<string, { id: number; rows: string }>();
  readonly aliases = new Map<string, number>();
  /** Renames that fail, by `from->to`. */
  readonly failRenames = new Set<string>();

  create(name: string, rows: string) {
    this.byName.set(name, { id: this.nextId++, rows });
  }
  nameOf(id: number | undefined) {
    return [...this.byName].find(([, c]) => c.id === id)?.[0];
  }
  readonly client = {
    renameCollection: ({
      collection_name,
      new_collection_name,
    }: {
      collection_name: string;
      new_collection_name: string;
    }) => {
      const c = this.byName.get(collection_name);
      if (
        !c ||
        this.byName.has(new_collection_name) ||
        this.failRenames.has(`${collection_name}->${new_collection_name}`)
      )
        return Promise.resolve({ code: 1, reason: "rename refused" });
      this.byName.delete(collection_name);
      this.byName.set(new_collection_name, c);
      return Promise.resolve({ code: 0, reason: "" });
    },
    listAliases: ({ collection_name }: { collection_name: string }) => {
      const id = this.byName.get(collection_name)?.id;
      return Promise.resolve({
        status: { code: 0 },
        aliases: [...this.aliases].filter(([, target]) => target === id).map(([a]) => a),
      });
    },
    alterAlias: ({ alias, collection_name }: { alias: string; collection_name: string }) => {
      const c = this.byName.get(collection_name);
      if (!c) return Promise.resolve({ code: 1, reason: "no such collection" });
      this.aliases.set(alias, c.id);
      return Promise.resolve({ code: 0, reason: "" });
    },
    dropAlias: ({ alias }: { alias: string }) => {
      this.aliases.delete(alias);
      return Promise.resolve({ code: 0, reason: "" });
    },
  };
  exists(name: string) {
    return Promise.resolve(this.byName.has(name));
  }
  drop(name: string) {
    const c = this.byName.get(name);
    if (c && [...this.aliases.values()].includes(c.id))
      return Promise.reject(new Error("collection has aliases"));
    this.byName.delete(name);
    return Promise.resolve();
  }
  listCollections() {
    return Promise.resolve([...this.byName.keys()]);
  }
}

const silent = () => new Log({ write: () => true });
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const asMilvus = (f: FakeMilvus) => f as any as Parameters<typeof swapIntoPlace>[0];

describe("restore: putting a verified collection in place (rename servers)", () => {
  it("takes over the name, moves the aliases and only then drops the old collection", async () => {
    const m = new FakeMilvus();
    m.create("docs", "old rows");
    m.aliases.set("docs_live", m.byName.get("docs")?.id ?? 0);
    m.create("docs_restoring_ab12", "restored rows");
    const warnings: string[] = [];
    await swapIntoPlace(asMilvus(m), "docs_restoring_ab12", "docs", silent(), warnings);
    assert.deepEqual([...m.byName.keys()], ["docs"]);
    assert.equal(m.byName.get("docs")?.rows, "restored rows");
    assert.equal(m.nameOf(m.aliases.get("docs_live")), "docs");
    assert.deepEqual(warnings, []);
  });

  it("renames the existing collection back when the restored one cannot take its name", async () => {
    const m = new FakeMilvus();
    m.create("docs", "old rows");
    m.create("docs_restoring_ab12", "restored rows");
    m.failRenames.add("docs_restoring_ab12->docs");
    await assert.rejects(
      swapIntoPlace(asMilvus(m), "docs_restoring_ab12", "docs", silent(), []),
      /renaming docs_restoring_ab12 to docs: rename refused/,
    );
    // The existing collection keeps its name and rows; the verified restore is still there to drop.
    assert.equal(m.byName.get("docs")?.rows, "old rows");
    assert.equal(m.byName.get("docs_restoring_ab12")?.rows, "restored rows");
    assert.equal(m.byName.size, 2);
  });

  it("says where each collection is when the rename back fails too", async () => {
    const m = new FakeMilvus();
    m.create("docs", "old rows");
    m.create("docs_restoring_ab12", "restored rows");
    m.failRenames.add("docs_restoring_ab12->docs");
    const original = m.client.renameCollection;
    m.client.renameCollection = (req) => {
      if (req.collection_name.startsWith("docs_replaced_")) m.failRenames.add(`${req.collection_name}->docs`);
      return original(req);
    };
    const err = await swapIntoPlace(asMilvus(m), "docs_restoring_ab12", "docs", silent(), []).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err instanceof SwapRollbackError);
    const aside = [...m.byName.keys()].find((n) => n.startsWith("docs_replaced_")) ?? "";
    assert.equal(m.byName.get(aside)?.rows, "old rows");
    assert.equal(
      err.message,
      "putting the restored collection in place failed (renaming docs_restoring_ab12 to docs: rename refused (code 1)) " +
        `and renaming the existing one back failed too (renaming ${aside} to docs: rename refused (code 1)). ` +
        `State: the existing docs is now named ${aside}, the verified restore is docs_restoring_ab12, and nothing is named docs. ` +
        `Next: rename ${aside} back to docs (or docs_restoring_ab12 to docs to use the restore) once Milvus answers.`,
    );
  });

  it("keeps the replaced collection, with a warning, when it cannot be dropped", async () => {
    const m = new FakeMilvus();
    m.create("docs", "old rows");
    m.create("docs_restoring_ab12", "restored rows");
    const drop = m.drop.bind(m);
    m.drop = (name: string) =>
      name.startsWith("docs_replaced_") ? Promise.reject(new Error("timeout")) : drop(name);
    const warnings: string[] = [];
    await swapIntoPlace(asMilvus(m), "docs_restoring_ab12", "docs", silent(), warnings);
    assert.equal(m.byName.get("docs")?.rows, "restored rows");
    assert.match(
      warnings[0] ?? "",
      /^the replaced collection was kept as docs_replaced_[0-9a-f]{8} \(dropping it failed: timeout\); drop it when no longer needed$/,
    );
  });
});
