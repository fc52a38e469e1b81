print("shiplog")
