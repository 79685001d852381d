from audiodiff.cli import main

main()
