// Says on stdout why a run does not train: a microbatch needs every stage, so one stage without
// a server stalls every driver. Operators see the gap when it opens (a lone node, a crashed
// server) and when it closes, without debug logging.
import type { StageRegistry } from '../registry/registry.js'

export interface CoverageComponents {
  registry: StageRegistry
}

export interface CoverageInit {
  nStages: number
  /** How often to look at the registry's view (it changes at most once per refresh). */
  intervalMs: number
  /** Where the lines go (the node passes its notices, which the command line prints). */
  print?: (line: string) => void
}

export class StageCoverage {
  private readonly registry: StageRegistry
  private readonly init: Required<CoverageInit>
  private timer?: NodeJS.Timeout
  private running = false
  /** The stages without a server at the last check, as printed. */
  private last?: string

  constructor (components: CoverageComponents, init: CoverageInit) {
    this.registry = components.registry
    this.init = { print: () => {}, ...init }
  }

  /** Stages nobody serves in the current view. */
  get missing (): number[] {
    return this.registry.view.stages.filter(s => s.peers.length === 0).map(s => s.stage)
  }

  /** Checks on a fresh view (the node's own announcement included), then at every interval. */
  async start (): Promise<void> {
    this.running = true
    await this.registry.refresh().catch(() => {})
    if (!this.running) return
    this.check()
    this.timer = setInterval(() => { this.check() }, this.init.intervalMs)
  }

  stop (): void {
    this.running = false
    clearInterval(this.timer)
  }

  private check (): void {
    const missing = this.missing
    const key = missing.join(',')
    if (key === this.last) return
    this.last = key
    if (missing.length === 0) {
      this.init.print(`every stage has a server: the pipeline is complete (${this.init.nStages} stage(s))`)
      return
    }
    const servers = this.registry.view.stages.reduce((n, s) => n + s.peers.length, 0)
    const which = missing.length === 1 ? `stage ${missing[0]}` : `stages ${missing.join(', ')}`
    const remedy = servers < this.init.nStages
      ? `this run has ${this.init.nStages} stages and ${servers} node(s): start ${this.init.nStages - servers} more`
      : 'a node of a crowded stage moves there at its next rebalancing check'
    this.init.print(`waiting for a server of ${which}: nothing trains until every stage has one (${remedy})`)
  }
}
