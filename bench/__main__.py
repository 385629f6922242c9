from bench.pull import main

main()
