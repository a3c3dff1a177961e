// The swarmtrain dashboard: polls the daemon's /status every second and draws it. Everything
// in the status may come from other peers (versions, peer ids), so it is only ever inserted as
// text, never as HTML.
/* global uPlot */
'use strict'

const POLL_MS = 1000
/** Throughput samples kept for the rate chart (10 minutes at one a second). */
const MAX_RATE_SAMPLES = 600

const $ = id => document.getElementById(id)
const rates = { t: [], driven: [], served: [] }
let previous
/** For a node that does not drive: the swarm's loss as its drivers report it, against the tokens they drove. */
const swarmHistory = { train: [], validation: [] }
let lossPlot
let ratePlot

function short (peerId) {
  return peerId.length > 14 ? `${peerId.slice(0, 8)}…${peerId.slice(-6)}` : peerId
}

function fmt (n, digits = 0) {
  if (n === undefined || n === null || !Number.isFinite(n)) return '-'
  if (Math.abs(n) >= 1e6) return `${(n / 1e6).toFixed(2)}M`
  if (Math.abs(n) >= 1e4) return `${(n / 1e3).toFixed(1)}k`
  return n.toFixed(digits)
}

function bytes (n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let i = 0
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++ }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`
}

function cell (row, text, className) {
  const td = row.insertCell()
  td.textContent = text
  if (className) td.className = className
  return td
}

function chartWidth (el) {
  return Math.max(300, el.parentElement.clientWidth - 24)
}

/** uPlot wants one x array shared by every series: the union of both curves' tokens, gaps as null. */
function lossData (history) {
  const xs = [...new Set([...history.train, ...history.validation].map(p => p[0]))].sort((a, b) => a - b)
  const index = new Map(xs.map((x, i) => [x, i]))
  const train = new Array(xs.length).fill(null)
  const validation = new Array(xs.length).fill(null)
  for (const [x, y] of history.train) train[index.get(x)] = y
  for (const [x, y] of history.validation) validation[index.get(x)] = y
  return [xs, train, validation]
}

function drawLoss (history) {
  const el = $('loss-chart')
  const data = lossData(history)
  if (lossPlot === undefined) {
    lossPlot = new uPlot({
      width: chartWidth(el),
      height: 260,
      scales: { x: { time: false } },
      axes: [{ label: 'tokens' }, { label: 'nats/token' }],
      series: [
        { label: 'tokens' },
        { label: 'training', stroke: '#1f77b4', width: 1.5, spanGaps: true },
        { label: 'validation', stroke: '#d62728', width: 2, spanGaps: true, points: { show: true, size: 6 } }
      ]
    }, data, el)
  } else {
    lossPlot.setData(data)
  }
  el.dataset.points = String(history.train.length + history.validation.length)
}

function drawRates () {
  const el = $('rate-chart')
  const data = [rates.t, rates.driven, rates.served]
  if (ratePlot === undefined) {
    ratePlot = new uPlot({
      width: chartWidth(el),
      height: 260,
      axes: [{}, { label: 'tokens/s' }],
      series: [
        {},
        { label: 'driven by this node', stroke: '#2ca02c', width: 1.5 },
        { label: 'served by this stage', stroke: '#ff7f0e', width: 1.5 }
      ]
    }, data, el)
  } else {
    ratePlot.setData(data)
  }
  el.dataset.points = String(rates.t.length)
}

function drawStages (status) {
  const body = $('stages').tBodies[0]
  body.replaceChildren()
  for (const stage of status.stages) {
    const head = body.insertRow()
    head.className = 'stage-head'
    cell(head, `stage ${stage.stage}`)
    cell(head, `${stage.peers.length} peer${stage.peers.length === 1 ? '' : 's'}`)
    cell(head, fmt(stage.throughput, 1), 'num')
    cell(head, fmt(stage.peers.reduce((a, p) => a + p.servedThroughput, 0), 1), 'num')
    cell(head, '')
    cell(head, '')
    cell(head, '')
    if (stage.peers.length === 0) {
      const row = body.insertRow()
      cell(row, '')
      cell(row, 'no server')
    }
    for (const p of stage.peers) {
      const row = body.insertRow()
      row.className = p.peerId === status.peerId ? 'peer self' : 'peer'
      row.dataset.peer = p.peerId
      cell(row, '')
      cell(row, short(p.peerId) + (p.peerId === status.peerId ? ' (this node)' : ''), 'peer')
      cell(row, fmt(p.throughput, 1), 'num')
      cell(row, fmt(p.servedThroughput, 1), 'num')
      cell(row, String(p.queueLength), 'num')
      cell(row, String(p.round), 'num')
      cell(row, p.version)
    }
  }
}

function drawEvents (events) {
  const list = $('events')
  list.replaceChildren()
  for (const e of [...events].reverse()) {
    const item = document.createElement('li')
    item.className = `kind-${e.kind}`
    const time = document.createElement('time')
    time.textContent = new Date(e.at).toLocaleTimeString()
    item.append(time, document.createTextNode(e.text))
    list.append(item)
  }
  if (events.length === 0) {
    const item = document.createElement('li')
    item.textContent = 'none yet'
    list.append(item)
  }
}

function drawAveraging (averaging) {
  $('averaging-panel').hidden = averaging === undefined
  if (averaging === undefined) return
  const list = $('averaging')
  list.replaceChildren()
  for (const [key, value] of Object.entries(averaging)) {
    if (typeof value === 'object' && value !== null) continue
    const dt = document.createElement('dt')
    dt.textContent = key
    const dd = document.createElement('dd')
    dd.textContent = typeof value === 'number' ? fmt(value, Number.isInteger(value) ? 0 : 3) : String(value)
    list.append(dt, dd)
  }
}

function draw (status) {
  const pipeline = status.services.pipeline
  const driver = pipeline?.driver
  const now = Date.now() / 1000
  const served = pipeline?.load?.tokensPerSecond ?? 0
  // The driven rate from the tokens counter between two polls.
  const driven = previous !== undefined && driver !== undefined ? Math.max(0, (driver.tokens - previous.tokens) / (now - previous.at)) : 0
  previous = driver === undefined ? undefined : { at: now, tokens: driver.tokens }
  rates.t.push(now)
  rates.driven.push(driven)
  rates.served.push(served)
  if (rates.t.length > MAX_RATE_SAMPLES) for (const k of Object.keys(rates)) rates[k].shift()

  $('node').textContent = `peer ${short(status.peerId)} · run ${status.runId.slice(0, 12)} · v${status.version}`
  const stage = status.stage === undefined ? 'no stage yet' : `stage ${status.stage}${status.pinned ? ' (pinned)' : ''}`
  $('role').textContent = `${stage}${driver !== undefined ? ', driving' : ', serving'}`
  // A node that drives shows its own driver; one that only serves, the swarm's drivers.
  const swarm = status.swarm
  $('loss-source').textContent = driver !== undefined ? 'this node\'s driver' : `the swarm's ${swarm?.drivers ?? 0} driver(s)`
  $('train-loss').textContent = fmt(driver !== undefined ? driver.trainLoss : swarm?.loss, 4)
  $('validation-loss').textContent = fmt(driver !== undefined ? driver.validationLoss : swarm?.validationLoss, 4)
  if (driver === undefined && swarm !== undefined) recordSwarmLoss(swarm)
  $('tokens').textContent = fmt(driver?.tokens)
  $('tokens-per-second').textContent = driver !== undefined ? fmt(driven) : fmt(served)
  $('bytes').textContent = `${bytes(status.bytes.sent)} / ${bytes(status.bytes.received)}`
  $('connections').textContent = String(status.connections)
  $('round').textContent = String(status.round)
  drawLoss(driver !== undefined ? pipeline.history : swarmHistory)
  drawRates()
  drawStages(status)
  drawEvents(status.events)
  drawAveraging(status.services.averaging)
}

/** Adds the swarm's losses at the tokens driven so far, once per new token count. */
function recordSwarmLoss (swarm) {
  for (const [series, loss] of [[swarmHistory.train, swarm.loss], [swarmHistory.validation, swarm.validationLoss]]) {
    if (loss === undefined || loss === null) continue
    const last = series[series.length - 1]
    if (last !== undefined && (last[0] >= swarm.drivenTokens || last[1] === loss)) continue
    series.push([swarm.drivenTokens, loss])
  }
}

async function poll () {
  try {
    const res = await fetch('status', { cache: 'no-store' })
    if (!res.ok) throw new Error(`HTTP ${res.status}`)
    draw(await res.json())
    $('state').textContent = `live · ${new Date().toLocaleTimeString()}`
    $('state').className = 'state'
  } catch (err) {
    $('state').textContent = `daemon not answering (${err.message})`
    $('state').className = 'state down'
  }
  setTimeout(poll, POLL_MS)
}

window.addEventListener('resize', () => {
  if (lossPlot !== undefined) lossPlot.setSize({ width: chartWidth($('loss-chart')), height: 260 })
  if (ratePlot !== undefined) ratePlot.setSize({ width: chartWidth($('rate-chart')), height: 260 })
})

poll()
