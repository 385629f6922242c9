from bench.pull import main
from bench.push_plan import main as push_plan

main()
push_plan()
