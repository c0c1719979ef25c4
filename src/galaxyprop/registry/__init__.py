"""From a trained model to what users load: the Predictor (head + features + calibration), its MLflow
pyfunc and serving app, registered versions and their aliases (registry.versions), the gates that
promote a candidate to production (registry.promotion) and the lock that serialises those moves."""
