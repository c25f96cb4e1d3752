// The ndt7 browser test: consent, a token from the test server's
// locate-style endpoint, M-Lab's ndt7 library for the download and the
// upload, then the record (test_name ndt7-browser) posted to collect,
// which answers with the server's authoritative record.
'use strict';

(function () {
  const cfg = JSON.parse(document.querySelector('meta[name="neubot-ndt7"]').content);
  const $ = (id) => document.getElementById(id);
  const MAX_SAMPLES = 512;

  // A random version 4 UUID; crypto.randomUUID needs a secure context,
  // getRandomValues does not.
  function uuid4() {
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  // The browser's random identifier, like an agent's agent_id.
  function agentID() {
    let id = localStorage.getItem('neubot-agent-id');
    if (!id) {
      id = uuid4();
      localStorage.setItem('neubot-agent-id', id);
    }
    return id;
  }

  function show(id, on) { $(id).hidden = !on; }
  function fail(msg) {
    $('error').textContent = msg;
    show('error', true);
    show('progress', false);
    show('consent', true);
    $('start').disabled = false;
  }

  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  // locate asks the server for a token, waiting while it is busy.
  async function locate() {
    for (let i = 0; i < 60; i++) {
      const resp = await fetch(cfg.locate_path, { cache: 'no-store' });
      const js = await resp.json();
      if (resp.ok && js.results && js.results.length > 0) {
        return js.results[0].urls;
      }
      if (resp.status !== 503 && resp.status !== 429) {
        throw new Error(`the server refused: ${js.error ? js.error.detail : resp.status}`);
      }
      const wait = Number(resp.headers.get('Retry-After')) || 5;
      $('phase').textContent = `The server is busy; trying again in ${wait} s…`;
      await sleep(wait * 1000);
    }
    throw new Error('the server stayed busy');
  }

  // tcpInfo converts the specification's TCPInfo (microseconds) into the
  // record's units.
  function tcpInfo(t) {
    if (!t) return undefined;
    const v = (x) => (typeof x === 'number' && x > 0 ? x : 0);
    return {
      elapsed_s: v(t.ElapsedTime) / 1e6, rtt_ms: v(t.RTT) / 1e3, min_rtt_ms: v(t.MinRTT) / 1e3,
      rttvar_ms: v(t.RTTVar) / 1e3, bytes_acked: v(t.BytesAcked), bytes_received: v(t.BytesReceived),
      bytes_sent: v(t.BytesSent), bytes_retrans: v(t.BytesRetrans), busy_s: v(t.BusyTime) / 1e6,
      rwnd_limited_s: v(t.RWndLimited) / 1e6, sndbuf_limited_s: v(t.SndBufLimited) / 1e6,
    };
  }

  // Subtest collects what the library reports during one subtest.
  class Subtest {
    constructor(name) {
      this.name = name;
      this.samples = [];
      this.last = null; // the last client measurement
      this.server = null; // the last server measurement
      this.failure = '';
    }

    measurement(m) {
      if (m.Source === 'server') {
        this.server = m.Data;
        return;
      }
      const d = m.Data;
      const prev = this.samples[this.samples.length - 1];
      const t = Math.max(0, d.ElapsedTime);
      let mbps = 0;
      if (prev && t > prev.t_s) {
        mbps = Math.max(0, (d.NumBytes - prev.bytes) * 8 / 1e6 / (t - prev.t_s));
      } else if (!prev && t > 0) {
        mbps = d.NumBytes * 8 / 1e6 / t;
      }
      if (this.samples.length < MAX_SAMPLES && (!prev || t >= prev.t_s)) {
        this.samples.push({ t_s: t, bytes: Math.max(0, Math.round(d.NumBytes)), mbps });
      }
      this.last = d;
      $('live').textContent = (d.MeanClientMbps || 0).toFixed(2);
    }

    // record is the subtest as the record's NDT7Subtest.
    record() {
      const c = this.last || { ElapsedTime: 0, NumBytes: 0 };
      const s = this.server || {};
      const app = s.AppInfo;
      const out = {
        goodput_mbps: c.ElapsedTime > 0 ? c.NumBytes * 8 / 1e6 / c.ElapsedTime : 0,
        measured_at: 'client',
        bytes: Math.max(0, Math.round(c.NumBytes)),
        duration_s: Math.min(60, Math.max(0, c.ElapsedTime)),
        samples: this.samples,
        uuid: (s.ConnectionInfo && s.ConnectionInfo.UUID) || '',
        failure: this.failure,
      };
      if (app) {
        out.server_measurement = {
          app_elapsed_s: app.ElapsedTime / 1e6, app_bytes: app.NumBytes, tcp_info: tcpInfo(s.TCPInfo),
        };
        // The upload's receiver is the server: its counters are the goodput.
        if (this.name === 'upload' && app.ElapsedTime > 0) {
          out.goodput_mbps = app.NumBytes * 8 / app.ElapsedTime;
          out.measured_at = 'server';
        }
      }
      return out;
    }
  }

  async function run() {
    show('error', false);
    show('result', false);
    show('consent', false);
    show('progress', true);
    $('phase').textContent = 'Getting a slot on the server…';
    if (typeof ndt7 === 'undefined') {
      throw new Error('the ndt7 library is not installed on this server');
    }
    const uid = uuid4();
    const start = new Date();
    const urls = await locate();
    const token = new URL(urls[Object.keys(urls)[0]]).searchParams.get('access_token');
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const given = {
      '///ndt/v7/download': urls[`${scheme}:///ndt/v7/download`],
      '///ndt/v7/upload': urls[`${scheme}:///ndt/v7/upload`],
    };
    const libConfig = {
      mlabDataPolicyInapplicable: true, // our server, our consent above
      downloadworkerfile: 'static/vendor/ndt7-download-worker.js',
      uploadworkerfile: 'static/vendor/ndt7-upload-worker.js',
    };
    const dl = new Subtest('download');
    const ul = new Subtest('upload');
    const errors = [];
    const callbacks = {
      error: (e) => errors.push(String(e)),
      downloadStart: () => { $('phase').textContent = 'Download…'; },
      downloadMeasurement: (m) => dl.measurement(m),
      uploadStart: () => { $('phase').textContent = 'Upload…'; },
      uploadMeasurement: (m) => ul.measurement(m),
    };
    const dlCode = await ndt7.downloadTest(libConfig, callbacks, Promise.resolve(given));
    if (dlCode !== 0) dl.failure = errors.join('; ').slice(0, 128) || `error ${dlCode}`;
    const ulCode = await ndt7.uploadTest(libConfig, callbacks, Promise.resolve(given));
    if (ulCode !== 0) ul.failure = errors.join('; ').slice(0, 128) || `error ${ulCode}`;
    if (!dl.last && !ul.last) {
      throw new Error(`the test did not run: ${errors.join('; ')}`);
    }

    $('phase').textContent = 'Saving the result…';
    const testKeys = {};
    if (dl.last) testKeys.download = dl.record();
    if (ul.last) testKeys.upload = ul.record();
    const record = {
      measurement_uid: uid,
      agent_id: agentID(),
      test_name: cfg.test_name,
      test_version: cfg.test_version,
      schema_version: cfg.schema_version,
      start_time: start.toISOString(),
      duration_s: (Date.now() - start.getTime()) / 1000,
      agent: { software: cfg.library || 'ndt7-js', version: cfg.library_version || 'unknown', os: '', arch: '' },
      server: { id: '', version: '' },
      consent: { informed: $('informed').checked, can_collect: $('informed').checked, can_publish: $('can-publish').checked },
      synthetic: false,
      test_keys: testKeys,
    };
    const resp = await fetch(cfg.collect_path, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'Authorization': `Bearer ${token}` },
      body: JSON.stringify(record),
    });
    const merged = await resp.json();
    if (!resp.ok) {
      throw new Error(`the server did not accept the result: ${merged.error || resp.status}`);
    }
    showResult(merged);
  }

  function showResult(rec) {
    const k = rec.test_keys;
    const fmt = (s) => (s ? `${s.goodput_mbps.toFixed(2)} Mbit/s` : 'did not run');
    $('download').textContent = fmt(k.download);
    $('upload').textContent = fmt(k.upload);
    const sv = k.server_view && k.server_view.download && k.server_view.download.tcp_info;
    $('rtt').textContent = sv ? `${sv.min_rtt_ms.toFixed(3)} ms` : '–';
    $('saved').textContent = `Saved as measurement ${rec.measurement_uid}.`;
    $('saved').dataset.uid = rec.measurement_uid;
    show('progress', false);
    show('result', true);
    document.body.dataset.state = 'done';
  }

  $('consent-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    $('start').disabled = true;
    run().catch((e) => fail(`The test failed: ${e.message}`));
  });
  $('again').addEventListener('click', () => {
    show('result', false);
    show('consent', true);
    $('start').disabled = false;
  });
})();
