print("zbdfs")
