import { readFileSync, statSync, type Stats } from 'node:fs';
import type { Clock } from '../../clock.ts';
import { ScreeningListError, parseScreeningList } from './list.ts';
import { ScreeningIndex } from './matcher.ts';

/**
 * The screening list this node holds (env CLEARANCE_SCREENING_LIST): loaded at start — a list
 * that does not load stops the start (fail closed: a configured list is never silently absent) —
 * and loaded again by the service pass when the file changed (./screen.ts `rescreenOnListChange`).
 * A changed file that does not load is logged by the pass and the list loaded before stays.
 * Replace the file atomically (write another file, then rename it over this one). Every node
 * must be given the same file.
 */
export class ScreeningService {
  /** The file, or undefined when screening is not configured. */
  readonly path: string | undefined;
  readonly #clock: Clock;
  #index: ScreeningIndex | undefined;
  #seen: string | undefined;
  #loadedAt: number | undefined;

  constructor(path: string | undefined, clock: Clock) {
    this.path = path;
    this.#clock = clock;
  }

  /** The list as an index; undefined when screening is not configured. */
  get index(): ScreeningIndex | undefined {
    return this.#index;
  }

  /** When this node loaded the list it holds (epoch ms). */
  get loadedAt(): number | undefined {
    return this.#loadedAt;
  }

  /** Loads the file now; throws ScreeningListError naming the file when it cannot be read or is invalid. */
  load(): void {
    if (this.path === undefined) return;
    this.#read(this.#stat());
  }

  /**
   * Loads the file again when it changed on disk (its size, times or inode); true when the list's
   * content changed. Throws ScreeningListError when it changed into something that does not load.
   */
  reload(): boolean {
    if (this.path === undefined) return false;
    const stat = this.#stat();
    if (this.#index !== undefined && fingerprint(stat) === this.#seen) return false;
    const before = this.#index?.digest;
    this.#read(stat);
    return this.#index!.digest !== before;
  }

  #stat(): Stats {
    try {
      return statSync(this.path!);
    } catch (error) {
      throw new ScreeningListError(`CLEARANCE_SCREENING_LIST ${this.path}: cannot be read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
    }
  }

  #read(stat: Stats): void {
    let bytes: Buffer;
    try {
      bytes = readFileSync(this.path!);
    } catch (error) {
      throw new ScreeningListError(`CLEARANCE_SCREENING_LIST ${this.path}: cannot be read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
    }
    try {
      const index = new ScreeningIndex(parseScreeningList(bytes));
      this.#index = index;
      this.#seen = fingerprint(stat);
      this.#loadedAt = this.#clock.now();
    } catch (error) {
      if (error instanceof ScreeningListError) throw new ScreeningListError(`CLEARANCE_SCREENING_LIST ${this.path}: ${error.message}`);
      throw error;
    }
  }
}

function fingerprint(stat: Stats): string {
  return `${stat.ino}:${stat.size}:${stat.mtimeMs}:${stat.ctimeMs}`;
}
