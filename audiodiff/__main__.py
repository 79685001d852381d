try:
    from audiodiff.cli import main
except KeyboardInterrupt:  # Ctrl-C while Python imports the command line: one line, no traceback
    import sys

    sys.stderr.write("\ninterrupted\n")
    sys.exit(130)

main()
