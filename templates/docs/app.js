// hubforge docs: everything runs offline. Data files are scripts that call
// back into this file, so the site also works opened from file://.
(function () {
  'use strict';
  var G = window.HF_GRAPH;
  var nodes = G.nodes;
  var byName = new Map();
  nodes.forEach(function (n, i) { byName.set(n.n.toLowerCase(), i); n.ch = []; });
  nodes.forEach(function (n, i) { n.p.forEach(function (p) { nodes[p].ch.push(i); }); });

  // ---- lazy data ----
  var chunks = {};
  var lineage = null;
  var lineageDown = null;
  var waiting = {};
  function loadScript(src, key, done) {
    if (waiting[key]) { waiting[key].push(done); return; }
    waiting[key] = [done];
    var s = document.createElement('script');
    s.src = src;
    s.onerror = function () { showError('could not load ' + src); };
    document.head.appendChild(s);
  }
  function fire(key) {
    var list = waiting[key] || [];
    delete waiting[key];
    list.forEach(function (f) { f(); });
  }
  window.HF_LOADED_CHUNK = function (i, data) { chunks[i] = data; fire('c' + i); };
  window.HF_LOADED_LINEAGE = function (data) {
    lineage = data;
    lineageDown = {};
    Object.keys(data).forEach(function (col) {
      data[col].forEach(function (input) {
        (lineageDown[input] = lineageDown[input] || []).push(col);
      });
    });
    fire('lineage');
  };
  function withChunk(i, done) {
    if (chunks[i]) { done(chunks[i]); return; }
    loadScript('data/chunk-' + i + '.js', 'c' + i, function () { done(chunks[i]); });
  }
  function withLineage(done) {
    if (lineage) { done(); return; }
    loadScript('data/lineage.js', 'lineage', done);
  }

  // ---- helpers ----
  function esc(s) {
    return String(s == null ? '' : s).replace(/[&<>"']/g, function (c) {
      return { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c];
    });
  }
  function $(id) { return document.getElementById(id); }
  function showError(msg) {
    $('details').innerHTML = '<p class="status-missing">' + esc(msg) + '</p>';
    document.body.dataset.state = 'error';
  }
  function parseHash() {
    var out = {};
    location.hash.replace(/^#/, '').split('&').forEach(function (kv) {
      if (!kv) return;
      var i = kv.indexOf('=');
      out[decodeURIComponent(kv.slice(0, i))] = decodeURIComponent(kv.slice(i + 1));
    });
    return out;
  }
  function go(model, column) {
    var h = '#model=' + encodeURIComponent(model);
    if (column) h += '&column=' + encodeURIComponent(column);
    location.hash = h;
  }

  // ---- search list ----
  var LIST_MAX = 200;
  function renderList(selected) {
    var q = $('search').value.trim().toLowerCase();
    var html = [];
    var shown = 0;
    var matched = 0;
    for (var i = 0; i < nodes.length; i++) {
      var n = nodes[i];
      if (q && n.n.toLowerCase().indexOf(q) < 0 && !(n.t || []).some(function (t) { return t.toLowerCase().indexOf(q) >= 0; }) && n.k !== q) continue;
      matched++;
      if (shown >= LIST_MAX) continue;
      shown++;
      html.push('<a href="#model=' + encodeURIComponent(n.n) + '"' + (selected === i ? ' class="selected"' : '') +
        '><span class="kind">' + esc(n.k) + '</span>' + esc(n.n) + '</a>');
    }
    if (matched > shown) html.push('<div class="more">' + (matched - shown) + ' more: refine the search</div>');
    if (!matched) html.push('<div class="more">no match</div>');
    $('list').innerHTML = html.join('');
  }
  $('search').addEventListener('input', function () { renderList(current()); });
  $('search').addEventListener('keydown', function (e) {
    if (e.key === 'Enter') {
      var first = $('list').querySelector('a');
      if (first) location.hash = first.getAttribute('href');
    }
  });

  function current() {
    var h = parseHash();
    return h.model ? byName.get(h.model.toLowerCase()) : undefined;
  }

  // ---- graph ----
  var FULL_GRAPH_MAX = 300;
  var NEIGHBOURHOOD_MAX = 160;
  var cy = null;
  var shownKey = null;
  if (window.cytoscape && window.cytoscapeDagre) window.cytoscape.use(window.cytoscapeDagre);

  function neighbourhood(center) {
    var keep = new Set([center]);
    [['p', 3], ['ch', 3]].forEach(function (dir) {
      var frontier = [center];
      for (var d = 0; d < dir[1] && frontier.length && keep.size < NEIGHBOURHOOD_MAX; d++) {
        var next = [];
        frontier.forEach(function (i) {
          nodes[i][dir[0]].forEach(function (j) {
            if (!keep.has(j) && keep.size < NEIGHBOURHOOD_MAX) { keep.add(j); next.push(j); }
          });
        });
        frontier = next;
      }
    });
    return keep;
  }

  function drawGraph(center, extra) {
    var ids;
    var caption;
    if (nodes.length <= FULL_GRAPH_MAX) {
      ids = new Set(nodes.map(function (_, i) { return i; }));
      caption = 'The whole DAG: ' + nodes.length + ' nodes. Click a node to open it.';
    } else if (center === undefined) {
      $('graph-caption').textContent = nodes.length + ' nodes: pick a model to see its neighbourhood.';
      if (cy) { cy.destroy(); cy = null; shownKey = null; }
      return;
    } else {
      ids = neighbourhood(center);
      caption = 'Neighbourhood of ' + nodes[center].n + ': ' + ids.size + ' of ' + nodes.length + ' nodes.';
    }
    (extra || []).forEach(function (i) { ids.add(i); });
    var key = Array.from(ids).sort().join(',');
    $('graph-caption').textContent = caption;
    if (!window.cytoscape) return;
    if (cy && key === shownKey) return;
    shownKey = key;
    var elements = [];
    ids.forEach(function (i) {
      elements.push({ data: { id: 'n' + i, label: nodes[i].n, kind: nodes[i].k } });
    });
    ids.forEach(function (i) {
      nodes[i].p.forEach(function (p) {
        if (ids.has(p)) elements.push({ data: { id: 'e' + p + '_' + i, source: 'n' + p, target: 'n' + i } });
      });
    });
    if (cy) cy.destroy();
    cy = window.cytoscape({
      container: $('graph'),
      elements: elements,
      wheelSensitivity: 0.3,
      style: [
        { selector: 'node', style: { label: 'data(label)', 'font-size': 10, 'text-valign': 'center', 'text-halign': 'center',
          shape: 'round-rectangle', width: 'label', height: 18, padding: '6px', 'background-color': '#ddf4ff', 'border-width': 1, 'border-color': '#54aeff' } },
        { selector: 'node[kind = "source"], node[kind = "seed"]', style: { 'background-color': '#dafbe1', 'border-color': '#4ac26b' } },
        { selector: 'edge', style: { width: 1, 'line-color': '#afb8c1', 'target-arrow-color': '#afb8c1', 'target-arrow-shape': 'triangle', 'curve-style': 'bezier' } },
        { selector: '.selected', style: { 'background-color': '#fff8c5', 'border-color': '#d4a72c', 'border-width': 2 } },
        { selector: '.upstream', style: { 'background-color': '#fbefff', 'border-color': '#8250df', 'border-width': 2 } },
        { selector: '.downstream', style: { 'background-color': '#fff1e5', 'border-color': '#bc4c00', 'border-width': 2 } },
        { selector: '.faded', style: { opacity: 0.35 } }
      ],
      layout: { name: window.cytoscapeDagre ? 'dagre' : 'breadthfirst', rankDir: 'LR', nodeSep: 8, rankSep: 40 }
    });
    cy.on('tap', 'node', function (e) { go(e.target.data('label')); });
  }

  function highlight(center, up, down) {
    if (!cy) return;
    cy.elements().removeClass('selected upstream downstream faded');
    var any = up.size || down.size;
    if (any) cy.nodes().addClass('faded');
    up.forEach(function (i) { cy.$id('n' + i).removeClass('faded').addClass('upstream'); });
    down.forEach(function (i) { cy.$id('n' + i).removeClass('faded').addClass('downstream'); });
    if (center !== undefined) cy.$id('n' + center).removeClass('faded').addClass('selected');
  }

  // ---- column lineage ----
  function walk(start, edges) {
    var seen = new Set();
    var todo = [start];
    while (todo.length) {
      var c = todo.pop();
      (edges[c] || []).forEach(function (n) { if (!seen.has(n)) { seen.add(n); todo.push(n); } });
    }
    seen.delete(start);
    return Array.from(seen).sort();
  }
  function nodeOf(col) { return byName.get(col.slice(0, col.lastIndexOf('.'))); }

  // ---- details ----
  function table(rows, head) {
    return '<table><tr>' + head.map(function (h) { return '<th>' + esc(h) + '</th>'; }).join('') + '</tr>' +
      rows.map(function (r) { return '<tr>' + r.map(function (c) { return '<td>' + c + '</td>'; }).join('') + '</tr>'; }).join('') + '</table>';
  }

  function renderDetails(i, d, column, lin) {
    var h = [];
    h.push('<h2 id="model-name">' + esc(d.name) + '</h2>');
    h.push('<div><span class="badge">' + esc(d.kind) + '</span>' + (d.product ? '<span class="badge">product</span>' : '') +
      '<code>' + esc(d.path) + '</code></div>');
    if (d.description) h.push('<p>' + esc(d.description) + '</p>');
    if (d.lineage_unknown) h.push('<p class="hint">Column lineage unknown: ' + esc(d.lineage_unknown) + '</p>');
    h.push('<h3>Columns</h3>');
    h.push('<table id="columns"><tr><th>column</th><th>type</th><th>reads</th></tr>' + d.columns.map(function (c) {
      var sel = column && c.name.toLowerCase() === column.toLowerCase();
      return '<tr' + (sel ? ' class="selected"' : '') + '><td class="column" data-column="' + esc(c.name) + '">' + esc(c.name) + '</td><td>' +
        esc(c.type || '') + '</td><td>' + c.inputs.map(esc).join('<br>') + '</td></tr>';
    }).join('') + '</table>');
    if (lin) {
      var li = function (c) { return '<li data-col="' + esc(c) + '"><a href="#model=' + encodeURIComponent(c.slice(0, c.lastIndexOf('.'))) +
        '&column=' + encodeURIComponent(c.slice(c.lastIndexOf('.') + 1)) + '">' + esc(c) + '</a></li>'; };
      h.push('<div id="lineage" data-column="' + esc(lin.column) + '"><h3>Lineage of ' + esc(lin.column) + '</h3>' +
        '<p>Upstream: the columns it reads (' + lin.up.length + ')</p><ul id="lineage-upstream" class="lineage">' + lin.up.map(li).join('') + '</ul>' +
        '<p>Downstream: the columns that read it (' + lin.down.length + ')</p><ul id="lineage-downstream" class="lineage">' + lin.down.map(li).join('') + '</ul></div>');
    }
    if (d.filters && d.filters.length) h.push('<h3>Rows depend on</h3><p>' + d.filters.map(esc).join(', ') + '</p>');
    var links = function (list) { return list.map(function (n) { return '<a href="#model=' + encodeURIComponent(n) + '">' + esc(n) + '</a>'; }).join(', ') || '—'; };
    h.push('<h3>Depends on</h3><p>' + links(d.parents) + '</p><h3>Read by</h3><p>' + links(d.children) + '</p>');
    if (d.destinations && d.destinations.length) h.push('<h3>Destinations</h3><p>' + d.destinations.map(esc).join(', ') + '</p>');
    if (d.header) {
      h.push('<h3>Header</h3>' + table(Object.keys(d.header).filter(function (k) {
        var v = d.header[k]; return v !== null && v !== false && !(Array.isArray(v) && !v.length);
      }).map(function (k) { return [esc(k), esc(JSON.stringify(d.header[k]))]; }), ['key', 'value']));
    }
    if (d.sql) {
      h.push('<h3>SQL</h3><div class="tabs"><button class="on" data-tab="sql">source</button><button data-tab="rendered">rendered</button></div>' +
        '<pre id="sql-sql">' + esc(d.sql) + '</pre><pre id="sql-rendered" hidden>' + esc(d.rendered) + '</pre>');
    }
    if (d.intervals && d.intervals.ranges) {
      h.push('<h3>Built intervals</h3>' + table(d.intervals.ranges.map(function (r) {
        return [esc(r.start + '..' + r.end), '<span class="status-' + esc(r.status) + '">' + esc(r.status.replace('_', ' ')) + '</span>',
          esc(r.rows == null ? '' : r.rows), esc(r.run == null ? '' : '#' + r.run),
          esc(r.reasons.map(function (x) { return x.change + ': ' + x.reason; }).join('; ') +
            (r.marked_current ? 'by ' + r.marked_current.by + ': ' + r.marked_current.note : ''))];
      }), ['range', 'status', 'rows', 'run', 'why']));
    } else if (G.warehouse === false) {
      h.push('<p class="hint">No warehouse yet: build to see intervals and runs here.</p>');
    }
    if (d.runs && d.runs.length) {
      h.push('<h3>Last runs</h3>' + table(d.runs.map(function (r) {
        return ['#' + esc(r.run), esc(r.started_at), esc(r.outcome), esc(r.user), esc(r.change),
          esc(r.full ? 'whole table' : (r.intervals || []).map(function (iv) { return iv[0] + '..' + iv[1]; }).join(', ')), esc(r.rows == null ? '' : r.rows)];
      }), ['run', 'started', 'outcome', 'user', 'change', 'intervals', 'rows']));
    }
    $('details').innerHTML = h.join('');
    Array.prototype.forEach.call(document.querySelectorAll('#columns .column'), function (td) {
      td.addEventListener('click', function () { go(d.name, td.dataset.column); });
    });
    Array.prototype.forEach.call(document.querySelectorAll('.tabs button'), function (b) {
      b.addEventListener('click', function () {
        document.querySelectorAll('.tabs button').forEach(function (x) { x.classList.toggle('on', x === b); });
        $('sql-sql').hidden = b.dataset.tab !== 'sql';
        $('sql-rendered').hidden = b.dataset.tab !== 'rendered';
      });
    });
  }

  function overview() {
    var kinds = {};
    nodes.forEach(function (n) { kinds[n.k] = (kinds[n.k] || 0) + 1; });
    var h = ['<h2>' + esc(G.project) + '</h2><p>' + Object.keys(kinds).sort().map(function (k) {
      return kinds[k] + ' ' + esc(k); }).join(', ') + '.</p><p class="hint">Search or pick a model; click a column for its lineage.</p>'];
    var products = nodes.filter(function (n) { return n.pr; });
    if (products.length) {
      h.push('<h3>Products</h3><p>' + products.map(function (n) {
        return '<a href="#model=' + encodeURIComponent(n.n) + '">' + esc(n.n) + '</a>'; }).join(', ') + '</p>');
    }
    if (G.runs && G.runs.length) {
      h.push('<h3>Last runs</h3>' + table(G.runs.map(function (r) {
        return ['#' + esc(r.run), esc(String(r.started_at).replace('T', ' ')), esc(r.user), '<span class="status-' + (r.outcome === 'published' ? 'current' : 'missing') + '">' +
          esc(r.outcome) + '</span>', esc(r.models), esc(r.intervals), esc(r.rows == null ? '' : r.rows), '<code>' + esc(r.command) + '</code>'];
      }), ['run', 'started', 'user', 'outcome', 'models', 'intervals', 'rows', 'command']));
    } else if (!G.warehouse) {
      h.push('<p class="hint">No warehouse yet: build to see intervals and runs here.</p>');
    }
    $('details').innerHTML = h.join('');
  }

  function show() {
    var h = parseHash();
    var i = current();
    renderList(i);
    document.body.dataset.state = 'loading';
    if (i === undefined) {
      drawGraph(undefined);
      if (h.model) { showError('No model named ' + h.model + ' in this project.'); return; }
      overview();
      document.body.dataset.state = 'ready';
      return;
    }
    withChunk(nodes[i].c, function (data) {
      var d = data[nodes[i].n.toLowerCase()];
      var finish = function (lin) {
        var up = new Set(), down = new Set();
        if (lin) {
          lin.up.forEach(function (c) { var n = nodeOf(c); if (n !== undefined) up.add(n); });
          lin.down.forEach(function (c) { var n = nodeOf(c); if (n !== undefined) down.add(n); });
        }
        drawGraph(i, Array.from(up).concat(Array.from(down)).slice(0, 60));
        renderDetails(i, d, h.column, lin);
        highlight(i, up, down);
        var hl = document.createElement('div');
        hl.id = 'graph-highlight';
        hl.hidden = true;
        hl.dataset.selected = nodes[i].n;
        hl.dataset.upstream = Array.from(up).map(function (n) { return nodes[n].n; }).sort().join(',');
        hl.dataset.downstream = Array.from(down).map(function (n) { return nodes[n].n; }).sort().join(',');
        $('details').appendChild(hl);
        document.body.dataset.model = nodes[i].n;
        document.body.dataset.state = 'ready';
        // A test hook standing for a user's click: #model=M&click=COLUMN.
        if (h.click && !h.column) {
          var target = document.querySelector('#columns .column[data-column="' + h.click.replace(/"/g, '') + '"]');
          if (target) target.click();
        }
      };
      if (!h.column) { finish(null); return; }
      withLineage(function () {
        var key = nodes[i].n.toLowerCase() + '.' + h.column.toLowerCase();
        finish({ column: key, up: walk(key, lineage), down: walk(key, lineageDown) });
      });
    });
  }
  window.addEventListener('hashchange', show);
  show();
})();
