from bench.pull import main
from bench.push import main as push
from bench.push_plan import main as push_plan
from bench.recompute import main as recompute

main()
push_plan()
push()
recompute()
