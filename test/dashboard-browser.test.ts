// The dashboard in a real browser (Debian's chromium, headless, driven by playwright-core)
// against a running 2-node swarm: the stages and their peers appear, the loss chart gets
// points, the events list fills; a node that only serves shows the swarm's loss. A screenshot
// is saved to dist/test-output/dashboard.png.
import { test } from 'uvu'
import * as assert from 'uvu/assert'
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium, type BrowserContext } from 'playwright-core'
import type { PipelineStatus } from '../node/pipeline/swarm.js'
import { TestSwarm, waitFor } from './daemon-harness.js'

const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find(existsSync)
const screenshotDir = fileURLToPath(new URL('../test-output/', import.meta.url))

test('the dashboard shows the live swarm: stages, peers, a loss curve with points, events', async () => {
  assert.ok(CHROMIUM !== undefined, "no chromium: 'apt-get install chromium' (.ci/run installs it)")
  const swarm = new TestSwarm()
  const profile = mkdtempSync(join(tmpdir(), 'swarmtrain-chromium-'))
  let browser: BrowserContext | undefined
  try {
    const seed = await swarm.init('a', ['--stages', '2', '--d-model', '64', '--layers', '2', '--heads', '4', '--seq-len', '32', '--batch-size', '8'])
    const common = ['--capacity', '1000', '--threads', '1']
    const a = await swarm.start('a', seed, [...common, '--stage', '0', '--eval-every', '10'])
    const b = await swarm.start('b', swarm.clone(seed, 'b'), [...common, '--stage', '1', '--no-drive', '--bootstrap', a.address])
    // Two validations: the loss curve has points of both kinds.
    await waitFor('two validations on the driver', 120_000, async () => {
      const p = await swarm.pipeline(a) as PipelineStatus
      return p.history.validation.length >= 2 && p.history.train.length >= 10 ? true : undefined
    })

    // A persistent context on a new empty profile: chromium's --user-data-dir.
    browser = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: { width: 1280, height: 1000 }
    })
    const page = browser.pages()[0] ?? await browser.newPage()
    const errors: string[] = []
    page.on('pageerror', err => errors.push(err.message))
    await page.goto(`http://127.0.0.1:${a.controlPort}/`)

    // Both stages, each with its peer; this node marked.
    // (Page-side code as strings: the tests compile without DOM types.)
    await page.waitForFunction("document.querySelectorAll('#stages tr.peer').length >= 2", undefined, { timeout: 15_000 })
    const peers = await page.$$eval('#stages tr.peer', rows => rows.map(r => r.getAttribute('data-peer')))
    assert.equal(new Set(peers), new Set([a.peerId, b.peerId]))
    const stages = await page.$$eval('#stages tr.stage-head td:first-child', cells => cells.map(c => c.textContent))
    assert.equal(stages, ['stage 0', 'stage 1'])
    assert.match(await page.textContent('#role') ?? '', /stage 0.*driving/)

    // The loss chart: uPlot drew a canvas and holds the history's points; the numbers are shown.
    await page.waitForFunction("Number(document.getElementById('loss-chart').dataset.points) >= 12", undefined, { timeout: 15_000 })
    assert.ok(await page.$('#loss-chart canvas') !== null, 'the loss chart has a canvas')
    assert.match(await page.textContent('#validation-loss') ?? '', /^\d+\.\d{4}$/)
    assert.match(await page.textContent('#bytes') ?? '', /[1-9][\d.]* (KiB|MiB)/, 'bytes were sent and received')
    const events = await page.$$eval('#events li', items => items.map(i => i.textContent ?? ''))
    assert.ok(events.some(e => /serves stage 1/.test(e)), `events: ${events.join(' | ')}`)

    mkdirSync(screenshotDir, { recursive: true })
    await page.screenshot({ path: join(screenshotDir, 'dashboard.png'), fullPage: true })

    // The node that only serves shows the swarm's loss, from the driver's records, as it goes.
    await page.goto(`http://127.0.0.1:${b.controlPort}/`)
    await page.waitForFunction("/^\\d+\\.\\d{4}$/.test(document.getElementById('train-loss').textContent)", undefined, { timeout: 15_000 })
    assert.match(await page.textContent('#role') ?? '', /stage 1.*serving/)
    assert.is(await page.textContent('#loss-source'), 'the swarm\'s 1 driver(s)')
    await page.waitForFunction("Number(document.getElementById('loss-chart').dataset.points) >= 3", undefined, { timeout: 20_000 })
    assert.equal(errors, [], 'no script errors on the pages')
  } finally {
    await browser?.close()
    rmSync(profile, { recursive: true, force: true })
    await swarm.close()
  }
})

test.run()
