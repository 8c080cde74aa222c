/** Identifies the writer in every manifest (format changes bump FORMAT_VERSION in format.ts). */
export const TOOL = { name: "milvus-aks-backup", version: "0.1.0" };
