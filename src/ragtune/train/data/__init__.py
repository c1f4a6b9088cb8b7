"""Training data: reading dataset files into records (records.py) and turning records
into token ids with their loss masks (encode.py). Nothing here imports torch."""
