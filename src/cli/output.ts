/** Where commands write; tests capture it instead of the process streams. */
export interface Output {
  out(line: string): void;
  err(line: string): void;
}

export const processOutput: Output = {
  out: (line) => process.stdout.write(line + '\n'),
  err: (line) => process.stderr.write(line + '\n'),
};

/** Exit codes: 0 done, 1 the command ran and refused or failed, 2 the invocation or configuration is wrong. */
export const exit = { ok: 0, failed: 1, usage: 2 } as const;
