from softkm.cli import main

main()
