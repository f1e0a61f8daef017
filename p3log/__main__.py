from p3log.cli import main

main()
