// bankd console: live cluster status and the live event feed, over server-sent events.
// Served as a file (the Content-Security-Policy allows no inline script); it only ever sets
// textContent, never HTML, so nothing from the API is interpreted as markup.
'use strict';

(function () {
  var dash = '\u2014';

  function show(el, value) {
    if (el) {
      el.textContent = value === '' || value === undefined || value === null ? dash : String(value);
    }
  }

  function cell(row, value) {
    var td = document.createElement('td');
    td.textContent = value === '' || value === undefined ? dash : String(value);
    row.appendChild(td);
  }

  function clock() {
    return new Date().toISOString().substring(11, 19) + 'Z';
  }

  var cluster = document.getElementById('cluster');
  if (cluster && window.EventSource) {
    var live = document.getElementById('live');
    var updates = 0;
    var source = new EventSource('/ui/live/cluster');
    source.addEventListener('cluster', function (e) {
      var s = JSON.parse(e.data);
      cluster.querySelectorAll('[data-field]').forEach(function (el) {
        show(el, s[el.getAttribute('data-field')]);
      });
      var members = document.getElementById('members');
      while (members.firstChild) {
        members.removeChild(members.firstChild);
      }
      (s.members || []).forEach(function (m) {
        var row = document.createElement('tr');
        cell(row, m.node_id);
        cell(row, m.leader ? 'leader' : 'follower');
        cell(row, m.suffrage);
        cell(row, m.region);
        cell(row, m.version);
        cell(row, m.gossip);
        cell(row, m.api_addr);
        members.appendChild(row);
      });
      var err = document.getElementById('cluster-error');
      err.textContent = s.error || '';
      err.hidden = !s.error;
      updates++;
      cluster.setAttribute('data-updates', String(updates));
      live.textContent = 'live \u00b7 ' + clock();
    });
    source.addEventListener('logout', function () {
      source.close();
      window.location.assign('/ui/login?m=refused');
    });
    source.onerror = function () {
      live.textContent = 'reconnecting\u2026';
    };
  }

  var feed = document.getElementById('feed');
  if (feed && window.EventSource) {
    var state = document.getElementById('feed-state');
    var failure = document.getElementById('feed-error');
    var maxLines = 200;
    var events = new EventSource('/ui/live/events');
    events.onopen = function () {
      state.textContent = 'live';
    };
    events.addEventListener('event', function (e) {
      var ev = JSON.parse(e.data);
      var li = document.createElement('li');
      li.setAttribute('data-index', String(ev.index));
      var head = document.createElement('span');
      head.className = 'index';
      head.textContent = '#' + ev.index + ' ' + ev.at;
      li.appendChild(head);
      var items = document.createElement('ul');
      (ev.items || []).forEach(function (text) {
        var item = document.createElement('li');
        item.textContent = text;
        items.appendChild(item);
      });
      li.appendChild(items);
      feed.insertBefore(li, feed.firstChild);
      while (feed.children.length > maxLines) {
        feed.removeChild(feed.lastChild);
      }
      state.textContent = 'live \u00b7 ' + clock();
    });
    var note = function (e) {
      failure.textContent = JSON.parse(e.data);
      failure.hidden = false;
    };
    events.addEventListener('refused', note);
    events.addEventListener('note', note);
    events.addEventListener('logout', function () {
      events.close();
      window.location.assign('/ui/login?m=refused');
    });
    events.onerror = function () {
      state.textContent = 'reconnecting\u2026';
    };
  }
})();
