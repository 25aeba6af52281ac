"""The HTML page's style sheet and scripts (sortable tables, the listening view), inlined."""

__all__ = ["CSS", "LISTEN_JS", "SORT_JS"]

CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:16px 20px;color:#222;
max-width:1400px}
h1{font-size:21px;margin:4px 0}h2{font-size:16px;margin-top:26px;border-bottom:1px solid #ddd}
h3{font-size:14px}nav a{margin-right:12px}
table{border-collapse:collapse;font-size:12px;margin:8px 0}
th,td{border:1px solid #ddd;padding:3px 6px;text-align:left;white-space:nowrap}
th{background:#f3f5f8;cursor:pointer;user-select:none;position:sticky;top:0;z-index:2;
vertical-align:bottom}
th::after{content:" \\21C5";color:#999;font-size:10px}
th.asc::after{content:" \\25B2";color:#333}th.desc::after{content:" \\25BC";color:#333}
tr:nth-child(even) td{background:#fafafa}tr.anchor td{background:#fff3f0}
.tablewrap{max-width:100%;overflow-x:auto}
table.main th,table.main td{padding:3px 5px}
table.main td.num{text-align:right}
table.main .sys{position:sticky;left:0;z-index:1;background:#fff;white-space:normal;
min-width:13em;max-width:19em}
table.main th.sys{z-index:3;background:#f3f5f8}
table.main tr.anchor td.sys{background:#fff3f0}
table.main small{color:#666;font-size:10px}
th small{font-weight:normal;color:#555}
td.delta.better{color:#0a7a2f;font-weight:600}td.delta.worse{color:#b3261e;font-weight:600}
td.delta.ns{color:#555}
.figure{margin:12px 0}.figure svg{max-width:100%;height:auto}
.legend{margin:4px 0}.legend li{font-size:12px;color:#444}.meta{color:#555;font-size:13px}
details{margin:8px 0}summary{cursor:pointer;font-weight:600;font-size:14px}
.filters{display:flex;flex-wrap:wrap;gap:6px 16px;align-items:center;font-size:13px;
background:#f6f7f9;padding:8px;border:1px solid #e3e5e8;position:sticky;top:0;z-index:4}
.filters .systems{display:flex;flex-wrap:wrap;gap:2px 10px;max-width:100%}
.filters label{white-space:nowrap}
section.utt{border:1px solid #e3e5e8;margin:10px 0;padding:6px 8px;border-radius:4px}
section.utt header{display:flex;flex-wrap:wrap;gap:4px 14px;align-items:center;font-size:13px}
section.utt .text{font-size:14px;margin:4px 0;flex-basis:100%}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(250px,1fr));gap:6px}
.cell{border:1px solid #e8e8e8;padding:4px 6px;font-size:12px;border-radius:3px;min-width:0}
.cell.anchor{background:#fff8f6}.cell .name{font-weight:600;overflow-wrap:anywhere}
.cell .tr{margin:3px 0;overflow-wrap:anywhere}.cell .scores{color:#333}
.cell .err{color:#b3261e}.cell .links a{margin-right:6px;font-size:11px}
audio{width:100%;height:30px;display:block;margin:2px 0}
.media{display:flex;gap:12px;flex-wrap:wrap;flex-basis:100%}.media>div{min-width:240px}
mark.sub{background:#ffe08a}mark.ins{background:#ffc9c9}del{color:#b3261e}
.more{margin:8px 0}
"""

SORT_JS = """
document.querySelectorAll('table.sortable').forEach(function(t){
 t.querySelectorAll('th').forEach(function(th,i){th.addEventListener('click',function(){
  var asc=!th.classList.contains('asc');t.querySelectorAll('th').forEach(function(h){
  h.classList.remove('asc','desc')});th.classList.add(asc?'asc':'desc');
  var key=function(c){return c.dataset.sort!==undefined?c.dataset.sort:c.textContent.trim()};
  var b=t.tBodies[0],rows=Array.from(b.rows);rows.sort(function(x,y){
   var a=key(x.cells[i]),c=key(y.cells[i]);
   var na=parseFloat(a.replace(/^[^0-9+\\-.]*/,'')),nc=parseFloat(c.replace(/^[^0-9+\\-.]*/,''));
   var r=(!isNaN(na)&&!isNaN(nc))?na-nc:(isNaN(na)!==isNaN(nc)?(isNaN(na)?1:-1):a.localeCompare(c));
   return asc?r:-r;});
  rows.forEach(function(r){b.appendChild(r)});});});});
"""

LISTEN_JS = """
(function(){
var D=JSON.parse(document.getElementById('listen-data').textContent);
var root=document.getElementById('listen-items'),count=document.getElementById('listen-count');
var sysBox=document.getElementById('f-systems'),spk=document.getElementById('f-speaker');
var met=document.getElementById('f-metric'),more=document.getElementById('listen-more');
var PAGE=25,limit=PAGE;
function el(tag,cls,text){var e=document.createElement(tag);if(cls)e.className=cls;
 if(text!==undefined)e.textContent=text;return e}
function player(k,label){var d=el('div');if(label)d.appendChild(el('div','',label));
 var a=el('audio');a.controls=true;a.preload='none';a.src=D.media[k];d.appendChild(a);return d}
function fmt(v,d){return (v===null||v===undefined)?'\\u2013':v.toFixed(d)}
D.systems.forEach(function(s,i){var l=el('label');var c=el('input');c.type='checkbox';
 c.checked=true;c.dataset.i=i;c.addEventListener('change',function(){limit=PAGE;render()});
 l.appendChild(c);l.appendChild(document.createTextNode(' '+s.label+(s.anchor?' (anchor)':'')));
 sysBox.appendChild(l)});
D.speakers.forEach(function(s){var o=el('option','',s);o.value=s;spk.appendChild(o)});
D.metrics.forEach(function(m,i){var o=el('option','',m.name+(m.human?' (human)':''));
 o.value=String(i);met.appendChild(o)});
[spk,met].forEach(function(x){x.addEventListener('change',function(){limit=PAGE;render()})});
more.addEventListener('click',function(){limit+=PAGE;render()});
function diff(segs){var d=el('div','tr');segs.forEach(function(g,k){if(k)d.appendChild(
 document.createTextNode(' '));var e;if(g[0]==='=')e=el('span','',g[1]);
 else if(g[0]==='s'){e=el('mark','sub',g[1]);e.title='text: '+g[2]}
 else if(g[0]==='i'){e=el('mark','ins',g[1]);e.title='not in the text'}
 else{e=el('del','',g[1]);e.title='missing from the transcript'}d.appendChild(e)});return d}
function render(){
 var shown=Array.from(sysBox.querySelectorAll('input')).map(function(c){return c.checked});
 var sp=spk.value,mi=met.value===''?-1:parseInt(met.value,10);
 root.textContent='';var n=0,drawn=0;
 D.items.forEach(function(it){
  if(sp&&it.speaker!==sp)return;n++;if(drawn>=limit)return;drawn++;
  var sec=el('section','utt');sec.dataset.item=it.id;var h=el('header');
  h.appendChild(el('b','',it.id));
  if(it.speaker)h.appendChild(el('span','','speaker '+it.speaker));
  var t=el('div','text',it.text||'(no text: give --manifest)');
  if(it.textSource==='asr')t.title='normalised text from the transcribing metric';h.appendChild(t);
  var media=el('div','media');
  if(it.prompt!==null)media.appendChild(player(it.prompt,'target speaker\\u2019s prompt'));
  if(it.ref!==null)media.appendChild(player(it.ref,'real recording of this sentence'));
  if(media.childNodes.length)h.appendChild(media);sec.appendChild(h);
  var g=el('div','grid');
  it.cells.forEach(function(c,i){if(!shown[i])return;var s=D.systems[i];
   var cell=el('div','cell'+(s.anchor?' anchor':''));cell.dataset.system=s.label;
   var name=el('a','name',s.label+(s.anchor?' (anchor)':''));name.href=s.href;
   name.title='run folder '+s.run;cell.appendChild(name);
   if(s.runs>1&&s.seed!==null)cell.appendChild(el('small','',' seed '+s.seed));
   if(!c){cell.appendChild(el('div','err','not evaluated on this sentence'));
    g.appendChild(cell);return}
   if(c.a!==undefined)cell.appendChild(player(c.a));
   if(c.e)cell.appendChild(el('div','err',c.e));
   if(c.t)cell.appendChild(diff(c.t));
   if(c.s){var sc=el('div','scores');var parts=[];D.metrics.forEach(function(m,k){
     if(mi>=0&&k!==mi)return;parts.push(m.name+' '+fmt(c.s[k],m.digits))});
    sc.textContent=parts.join(' \\u00b7 ');cell.appendChild(sc)}
   var ln=el('div','links');Object.keys(s.files).forEach(function(k){var a=el('a','',k);
    a.href=s.files[k];ln.appendChild(a)});cell.appendChild(ln);g.appendChild(cell)});
  sec.appendChild(g);root.appendChild(sec)});
 count.textContent=n+' sentence'+(n===1?'':'s')+(drawn<n?', first '+drawn+' shown':'');
 more.style.display=drawn<n?'':'none';
}
render();
})();
"""
