/** Validation of caller options: every bad value becomes an InvalidOptionError naming it. */
import { InvalidOptionError } from './errors';

export function checkObject(value: unknown, name: string): Record<string, unknown> {
  if (value === undefined || value === null) return {};
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw new InvalidOptionError(`${name} must be an object, got ${describe(value)}`);
  }
  return value as Record<string, unknown>;
}

export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return `the string ${JSON.stringify(value.length > 40 ? value.slice(0, 40) + '…' : value)}`;
  if (typeof value === 'number') return String(value);
  return typeof value;
}

export function optNumber(o: Record<string, unknown>, key: string, def: number, min: number, max: number, integer = false): number {
  const v = o[key];
  if (v === undefined) return def;
  if (typeof v !== 'number' || !Number.isFinite(v)) {
    throw new InvalidOptionError(`option '${key}' must be a finite number, got ${describe(v)}`);
  }
  if (integer && !Number.isInteger(v)) {
    throw new InvalidOptionError(`option '${key}' must be an integer, got ${v}`);
  }
  if (v < min || v > max) {
    throw new InvalidOptionError(`option '${key}' must be between ${min} and ${max}, got ${v}`);
  }
  return v;
}

export function optEnum<T extends string>(o: Record<string, unknown>, key: string, values: readonly T[], def: T): T {
  const v = o[key];
  if (v === undefined) return def;
  if (typeof v !== 'string' || !values.includes(v as T)) {
    throw new InvalidOptionError(`option '${key}' must be one of ${values.map((x) => `'${x}'`).join(', ')}, got ${describe(v)}`);
  }
  return v as T;
}

export function optBoolean(o: Record<string, unknown>, key: string, def: boolean): boolean {
  const v = o[key];
  if (v === undefined) return def;
  if (typeof v !== 'boolean') throw new InvalidOptionError(`option '${key}' must be a boolean, got ${describe(v)}`);
  return v;
}

export function optFunction<F>(o: Record<string, unknown>, key: string): F | undefined {
  const v = o[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'function') throw new InvalidOptionError(`option '${key}' must be a function, got ${describe(v)}`);
  return v as F;
}

export function optSignal(o: Record<string, unknown>, key = 'signal'): AbortSignal | undefined {
  const v = o[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'object' || v === null || typeof (v as AbortSignal).aborted !== 'boolean' || typeof (v as AbortSignal).addEventListener !== 'function') {
    throw new InvalidOptionError(`option '${key}' must be an AbortSignal, got ${describe(v)}`);
  }
  return v as AbortSignal;
}

export function rejectUnknown(o: Record<string, unknown>, known: readonly string[], what: string): void {
  for (const k of Object.keys(o)) {
    if (o[k] !== undefined && !known.includes(k)) {
      throw new InvalidOptionError(`unknown ${what} option '${k}' (known: ${known.join(', ')})`);
    }
  }
}
