// Hosts on a switch, in network namespaces: each host namespace has one link (a veth pair) to a
// bridge in a namespace of its own, so the machine's own network is never touched. Links are
// limited in both directions with tc tbf on egress at each end (the host's eth0, and the
// bridge's port towards it). Addresses are 11.0.0.N/24: libp2p counts every reserved range
// (RFC 1918, TEST-NETs, ...) as private, and a swarmtrain node whose addresses are all private
// acts as if behind NAT (relay client, DHT client). The namespaces have no route anywhere else.
import { removeNamespace, sh } from './shell.js'

export interface BridgeHost {
  /** Its namespace, its link's device there, and its address on the bridge. */
  ns: string
  dev: string
  address: string
  /** The bridge's port towards it (in the bridge's namespace). */
  port: string
}

/** Byte counters of a host's link, from the host's side. */
export interface LinkBytes {
  tx: number
  rx: number
}

const DEV = 'eth0'

export class BridgeNetwork {
  /** Every namespace's name starts with `${prefix}<pid>-`: leftovers of a dead run are recognized by it. */
  static readonly prefix = 'stwan'
  readonly bridge: string
  readonly hosts: BridgeHost[]
  private readonly created: string[] = []

  constructor (count: number) {
    const tag = `${BridgeNetwork.prefix}${process.pid}`
    this.bridge = `${tag}-sw`
    this.hosts = Array.from({ length: count }, (_, i) => ({ ns: `${tag}-h${i}`, dev: DEV, address: `11.0.0.${i + 1}`, port: `port${i}` }))
  }

  /** Removes the namespaces of runs whose process is gone (a crash, a SIGKILL); returns their names. */
  static async removeStale (): Promise<string[]> {
    const pattern = new RegExp(`^${BridgeNetwork.prefix}(\\d+)-\\S+`)
    const stale: string[] = []
    for (const line of (await sh('ip', 'netns', 'list')).split('\n')) {
      const m = pattern.exec(line)
      if (m === null || alive(Number(m[1]))) continue
      await removeNamespace(m[0])
      stale.push(m[0])
    }
    return stale
  }

  async create (): Promise<void> {
    await this.addNamespace(this.bridge)
    await this.in(this.bridge, 'ip', 'link', 'add', 'sw', 'type', 'bridge')
    await this.in(this.bridge, 'ip', 'link', 'set', 'sw', 'up')
    for (const host of this.hosts) {
      await this.addNamespace(host.ns)
      await sh('ip', 'link', 'add', host.port, 'netns', this.bridge, 'type', 'veth', 'peer', 'name', host.dev, 'netns', host.ns)
      await this.in(this.bridge, 'ip', 'link', 'set', host.port, 'master', 'sw')
      await this.in(this.bridge, 'ip', 'link', 'set', host.port, 'up')
      await this.in(host.ns, 'ip', 'addr', 'add', `${host.address}/24`, 'dev', host.dev)
      await this.in(host.ns, 'ip', 'link', 'set', host.dev, 'up')
    }
  }

  /**
   * Limits every link to `mbit` Mbit/s each way (undefined: no limit). The bucket holds 64 KB
   * (a burst of at least one timer tick at these rates) and the queue 100 ms of traffic beyond
   * it, as a home router's buffer would; packets beyond that are dropped.
   */
  async limit (mbit: number | undefined): Promise<void> {
    for (const host of this.hosts) {
      for (const [ns, dev] of [[host.ns, host.dev], [this.bridge, host.port]]) {
        if (mbit === undefined) await this.in(ns, 'tc', 'qdisc', 'del', 'dev', dev, 'root').catch(() => {})
        else await this.in(ns, 'tc', 'qdisc', 'replace', 'dev', dev, 'root', 'tbf', 'rate', `${mbit}mbit`, 'burst', '64kb', 'latency', '100ms')
      }
    }
  }

  /** Bytes a host sent and received on its link so far. */
  async bytes (host: BridgeHost): Promise<LinkBytes> {
    const [link] = JSON.parse(await sh('ip', '-n', host.ns, '-j', '-s', 'link', 'show', 'dev', host.dev)) as Array<{ stats64: { rx: { bytes: number }, tx: { bytes: number } } }>
    return { tx: link.stats64.tx.bytes, rx: link.stats64.rx.bytes }
  }

  /** Kills whatever runs inside, deletes every namespace (their links go with them); errors go to `onError`. */
  async remove (onError: (err: Error) => void): Promise<void> {
    for (const name of this.created.reverse()) await removeNamespace(name).catch(onError)
    this.created.length = 0
  }

  private async addNamespace (name: string): Promise<void> {
    await sh('ip', 'netns', 'add', name)
    this.created.push(name)
    await this.in(name, 'ip', 'link', 'set', 'lo', 'up')
  }

  private async in (ns: string, ...command: string[]): Promise<string> {
    return await sh('ip', 'netns', 'exec', ns, ...command)
  }
}

/** Whether process `pid` exists (a run's tag names its process). */
export function alive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}
