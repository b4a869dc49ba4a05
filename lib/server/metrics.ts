/** The server's counters, and their Prometheus text exposition (format 0.0.4) for GET /metrics. */
import type { GenerationStats } from '../session';

export class Metrics {
  promptTokens = 0;
  promptTokensReused = 0;
  predictedTokens = 0;
  draftedTokens = 0;
  acceptedTokens = 0;
  verifyPasses = 0;
  forwardPasses = 0;
  promptSeconds = 0;
  predictedSeconds = 0;
  /** Requests by outcome: 'ok', 'aborted' (the client left), 'rejected' (429), 'error' (4xx/5xx). */
  readonly requests = { ok: 0, aborted: 0, rejected: 0, error: 0 };

  /** Counts one generation's work (also an aborted one: its tokens were computed). */
  addGeneration(s: GenerationStats): void {
    this.promptTokens += s.promptTokens;
    this.promptTokensReused += s.promptTokensReused;
    this.predictedTokens += s.generatedTokens;
    this.draftedTokens += s.draftedTokens;
    this.acceptedTokens += s.acceptedTokens;
    this.verifyPasses += s.verifyPasses;
    this.forwardPasses += s.forwardPasses;
    this.promptSeconds += s.prefillMs / 1000;
    this.predictedSeconds += s.decodeMs / 1000;
  }

  render(gauges: { slotsTotal: number; slotsBusy: number; queued: number; queueMax: number }): string {
    const lines: string[] = [];
    const metric = (name: string, type: 'counter' | 'gauge', help: string, value: number | Array<[string, number]>) => {
      lines.push(`# HELP specdec_${name} ${help}`, `# TYPE specdec_${name} ${type}`);
      if (typeof value === 'number') lines.push(`specdec_${name} ${value}`);
      else for (const [labels, v] of value) lines.push(`specdec_${name}{${labels}} ${v}`);
    };
    metric('prompt_tokens_total', 'counter', 'Prompt tokens of all requests (reused from a slot\'s cache or evaluated).', this.promptTokens);
    metric('prompt_tokens_reused_total', 'counter', 'Prompt tokens found in a slot\'s KV cache and not evaluated again.', this.promptTokensReused);
    metric('prompt_seconds_total', 'counter', 'Prompt processing time.', this.promptSeconds);
    metric('tokens_predicted_total', 'counter', 'Generated tokens.', this.predictedTokens);
    metric('tokens_predicted_seconds_total', 'counter', 'Generation time.', this.predictedSeconds);
    metric('draft_tokens_total', 'counter', 'Speculative decoding: drafted tokens (tree nodes) verified.', this.draftedTokens);
    metric('draft_tokens_accepted_total', 'counter', 'Speculative decoding: drafted tokens accepted.', this.acceptedTokens);
    metric('verify_passes_total', 'counter', 'Speculative decoding: verification passes.', this.verifyPasses);
    metric('forward_passes_total', 'counter', 'Forward passes of the target model.', this.forwardPasses);
    metric('requests_total', 'counter', 'Generation requests by outcome.', Object.entries(this.requests).map(([k, v]) => [`outcome="${k}"`, v]));
    metric('slots_total', 'gauge', 'Slots (sessions) serving requests at once.', gauges.slotsTotal);
    metric('slots_busy', 'gauge', 'Slots serving a request now.', gauges.slotsBusy);
    metric('requests_queued', 'gauge', 'Requests waiting for a slot.', gauges.queued);
    metric('requests_queue_max', 'gauge', 'Most requests that may wait; more are refused with 429.', gauges.queueMax);
    return lines.join('\n') + '\n';
  }
}
