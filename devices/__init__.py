"""Reference data shipped with w2vprof (installed as the package `w2vprof.reference_data`).

paper_table2.csv - the paper's Table 2 as a w2vprof results file (source=paper).
profiles.csv     - device profiles: memory, class, peak FLOP/s where public, a source note each.
"""
