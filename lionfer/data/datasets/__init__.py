"""The dataset readers, one module per dataset (RAF-DB, SFEW, AffectNet, FER2013/FERPlus, ExpW, a
folder of class folders, a CSV manifest) plus the built-in synthetic faces and digits. Each returns
image paths or arrays with canonical labels and registers its name; lionfer.data.pipeline imports
them on first use.
"""
