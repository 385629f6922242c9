from bench.console import main as console
from bench.pull import main
from bench.push import main as push
from bench.push_plan import main as push_plan
from bench.recompute import main as recompute
from bench.webhooks import main as webhooks

main()
push_plan()
push()
recompute()
webhooks([])  # the figures: 100-event batches; 100 events/s for 60 s
console()  # every console page's p95 at 100,000 accounts and 1M snapshots (issue #21)
