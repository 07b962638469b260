#!/usr/bin/env python3
"""Per-stage times of spicebox's USB redirection path, from a log written with
the `usbtime` tracing target (see scripts/bench_usb):

  SPICEBOX_BENCH_LOG=warn,usbtime=debug SPICEBOX_BENCH_STDERR=/tmp/usb scripts/bench_usb
  scripts/bench_usb_stages.py /tmp/usb.spicebox

Each transfer is one cycle doorbell (vCPU) -> submit (vCPU) -> flushed
(request written to the socket, from the vCPU or else the SPICE task) -> header (reply's header read) -> client msg
(reply read whole) -> complete (usbredir reply matched) -> finished (Transfer
Event written), then the guest's time to its next doorbell. Cycles are grouped
by the reply's size (26: CBW, 64 KiB: data, 39: CSW) with median/p90/mean µs.
The log lines themselves cost a few µs each.
"""
import re,sys,statistics as st
ev=[]
for l in open(sys.argv[1]):
    l=re.sub(r'\x1b\[[0-9;]*m','',l)
    m=re.match(r'(\S+)T(\d+):(\d+):([\d.]+)Z\s+DEBUG usbtime: (doorbell|submit|flushed|header|client msg|complete|finished)(?: \w+=(\d+))?',l)
    if not m: continue
    t=int(m.group(2))*3600+int(m.group(3))*60+float(m.group(4))
    ev.append((t*1e6,m.group(5),int(m.group(6) or 0)))
# group cycles starting with doorbell
cyc=[];cur=None
for e in ev:
    if e[1]=='doorbell':
        if cur: cyc.append(cur)
        cur=[e]
    elif cur is not None: cur.append(e)
if cur: cyc.append(cur)
from collections import defaultdict
stages=defaultdict(lambda: defaultdict(list))
for i,c in enumerate(cyc):
    names=[x[1] for x in c]
    if names!=['doorbell','submit','flushed','header','client msg','complete','finished']: continue
    size=c[3][2]
    kind='data64k' if size>60000 else ('csw' if size==39 else ('cbw' if size==26 else 'other%d'%size))
    for a,b in zip(c,c[1:]):
        stages[kind][a[1]+'->'+b[1]].append(b[0]-a[0])
    if i+1<len(cyc):
        stages[kind]['finished->next doorbell'].append(cyc[i+1][0][0]-c[-1][0])
    stages[kind]['TOTAL doorbell->finished'].append(c[-1][0]-c[0][0])
for k,d in stages.items():
    print(k, len(d['TOTAL doorbell->finished']))
    for s,v in d.items():
        v=sorted(v); print('   %-28s med %7.1f  p90 %7.1f  mean %7.1f'%(s,v[len(v)//2],v[int(len(v)*.9)],sum(v)/len(v)))
