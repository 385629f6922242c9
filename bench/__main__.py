from bench.pull import main
from bench.push import main as push
from bench.push_plan import main as push_plan

main()
push_plan()
push()
