"""LeNet-5 on MNIST digits: train, evaluate, predict, save.

For Fashion-MNIST, change the dataset call to kiln.datasets.fashion_mnist().
"""

import kiln
from kiln import layers as L

(x, y), (xt, yt) = kiln.datasets.mnist()
model = kiln.Sequential(
    [L.RandomTranslation(0.1), L.Conv2D(6, 5, padding="same", activation="relu"), L.MaxPool2D(2)],
    [L.Conv2D(16, 5, activation="relu"), L.MaxPool2D(2), L.Flatten()],
    [L.Dense(120, activation="relu"), L.Dense(84, activation="relu"), L.Dense(10)],
)
model.compile(optimizer="adam", loss="cross_entropy", metrics=["accuracy"])
model.fit(x, y, epochs=40, batch_size=64, callbacks=[kiln.callbacks.WarmupCosine()])
print("test accuracy:", model.evaluate(xt, yt)["accuracy"])
print("predicted:", model.predict(xt[:8]).argmax(1).tolist(), "true:", yt[:8].tolist())
model.save("lenet5.kiln")
