package main

import (
	"html/template"
	"net/http"
	"time"

	"github.com/gormlock/lockmgr"
)

// pageTemplate is serve's web page: the live locks, and a small script
// that counts each expiry down from the database's clock.
var pageTemplate = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="5">
<title>lockmgr: {{.Table}}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; }
th, td { padding: .3em .8em; text-align: left; border-bottom: 1px solid #ddd; white-space: nowrap; }
th { background: #f4f4f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.expiring td.left { color: #b36b00; font-weight: bold; }
tr.expired td.left { color: #b00; }
.muted { color: #777; }
</style>
</head>
<body>
<h1>Locks in <code>{{.Table}}</code></h1>
<p id="summary">{{.Live}} live, {{.Expired}} expired rows not yet cleaned; database clock <time id="db-now" datetime="{{.NowISO}}">{{.NowText}}</time>.</p>
{{if .Locks}}<table id="locks">
<thead><tr><th>Name</th><th>Holder</th><th>PID</th><th>Fence</th><th>Taken (UTC)</th><th>Held</th><th>Until (UTC)</th><th>Left</th></tr></thead>
<tbody>
{{range .Locks}}<tr class="lock" data-name="{{.Name}}">
<td class="name"><code>{{.Name}}</code></td><td class="holder">{{.Holder}}</td><td class="num pid">{{.PID}}</td><td class="num fence">{{.Fence}}</td>
<td class="taken">{{.Taken}}</td><td class="num held">{{.Held}}</td><td class="until">{{.Until}}</td>
<td class="num left" data-until-ms="{{.UntilMS}}">{{.Left}}</td></tr>
{{end}}</tbody>
</table>{{else}}<p id="none" class="muted">No live locks.</p>{{end}}
<p class="muted">Read-only. Reloads every 5 s. <a href="/metrics">/metrics</a> · <a href="/locks.json">/locks.json</a></p>
<script>
(function () {
  var skew = {{.NowMS}} - Date.now();
  function fmt(ms) {
    if (ms <= 0) return "expired";
    var s = Math.floor(ms / 1000), h = Math.floor(s / 3600), m = Math.floor(s % 3600 / 60);
    s = s % 60;
    return (h ? h + "h" : "") + (h || m ? m + "m" : "") + s + "s";
  }
  function tick() {
    var now = Date.now() + skew;
    document.querySelectorAll("td.left[data-until-ms]").forEach(function (td) {
      var until = Number(td.dataset.untilMs);
      if (!until) return;
      td.textContent = fmt(until - now);
      td.parentNode.classList.toggle("expired", until <= now);
      td.parentNode.classList.toggle("expiring", until > now && until - now < 5000);
    });
    document.body.dataset.ticked = "yes";
  }
  tick();
  setInterval(tick, 1000);
})();
</script>
</body>
</html>
`))

// pageData is what pageTemplate shows.
type pageData struct {
	Table           string
	Live, Expired   int
	NowISO, NowText string
	NowMS           int64
	Locks           []pageLock
}

// pageLock is one row of the page's table.
type pageLock struct {
	Name, Holder, PID, Taken, Held, Until, Left string
	Fence, UntilMS                              int64
}

// page answers "/" with the live locks.
func (s *server) page(w http.ResponseWriter, r *http.Request) {
	snap, err := s.snapshot(r.Context())
	if err != nil {
		http.Error(w, oneLine(err), http.StatusServiceUnavailable)
		return
	}
	d := pageData{Table: s.table, Expired: snap.Expired(), NowISO: snap.Now.Format(time.RFC3339Nano),
		NowText: lockmgr.FormatTime(&snap.Now), NowMS: snap.Now.UnixMilli()}
	for _, l := range snap.Live("") {
		p := pageLock{Name: l.Name, Holder: l.LockedBy, PID: "-", Fence: l.Fence,
			Taken: pageTime(l.CreatedAt), Held: roundDur(snap.Now.Sub(l.CreatedAt)), Until: "never", Left: "never"}
		if l.LockProcess != nil {
			p.PID = processText(l.LockProcess)
		}
		if l.LockedUntil != nil {
			p.Until, p.UntilMS = pageTime(*l.LockedUntil), l.LockedUntil.UnixMilli()
			p.Left = roundDur(l.LockedUntil.Sub(snap.Now))
		}
		d.Locks = append(d.Locks, p)
	}
	d.Live = len(d.Locks)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'")
	_ = pageTemplate.Execute(w, d)
}

// pageTime is t in UTC to the second, short enough for a table's cell.
func pageTime(t time.Time) string { return t.UTC().Format(time.DateTime) }
