"""What researchers ask of the clusters, computed on plain arrays (no database here).

``agreement``: do two embedding models see the same clusters? ``trajectories``:
where do runs end, and when do they settle? ``projection``: a 2-D map of a sample.
"""
